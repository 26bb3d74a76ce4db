//! Read-only access to a user's repository: resolving revisions, reading base trees and
//! blobs, and diffs between commits. Nothing here writes to the repository.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::batch::{Answer, ObjectReader};
use crate::command::{Git, stderr_excerpt};
use crate::tree_fs::write_file;
use crate::validate::{check_repository_path, check_revision};
use crate::{CommitId, FileMode, GitError};

/// A user's repository, opened read-only.
///
/// Every call reads through the repository's git directory with optional locks off, so
/// airlock never writes to it: no index refresh, no refs, no worktrees, no fetched objects.
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
    git_dir: PathBuf,
    common_dir: PathBuf,
    object_format: ObjectFormat,
    bare: bool,
    /// Answers object lookups without starting git each time; shared by clones.
    objects: Arc<ObjectReader>,
    /// Trees already read, shared by clones.
    trees: Arc<Mutex<TreeCache>>,
}

/// Most tree entries kept in a [`TreeCache`] (about 100 bytes each); past it the cache
/// starts afresh.
const TREE_CACHE_ENTRIES: usize = 100_000;
/// Most commits whose root tree a [`TreeCache`] remembers.
const TREE_CACHE_COMMITS: usize = 4_096;

/// Parsed tree objects by id, and the root tree of each commit. Objects never change, so
/// a tree read once answers for ever. Intake reads the same directories for nearly every
/// proposal (the root, `src`, ...), and a directory untouched between two commits is the
/// same tree in both; asked to git each time, they were most of the requests on the one
/// pipe every intake and worker shares. Bounded crudely: past the limit it is emptied and
/// refills from the directories in use, which costs one request per directory once.
#[derive(Debug, Default)]
struct TreeCache {
    trees: HashMap<String, Arc<Vec<RawEntry>>>,
    /// Entries held in `trees`, for the bound.
    entries: usize,
    roots: HashMap<CommitId, String>,
}

/// The hash function of a repository's object ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectFormat {
    Sha1,
    Sha256,
}

impl ObjectFormat {
    /// The name git uses (`--object-format=`).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectFormat::Sha1 => "sha1",
            ObjectFormat::Sha256 => "sha256",
        }
    }
}

/// What a tree entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A file or a symbolic link (see [`TreeEntry::mode`]).
    Blob,
    /// A directory.
    Tree,
    /// A submodule (gitlink): a commit of another repository.
    Commit,
}

/// One entry of a commit's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Full path from the root of the tree, '/'-separated.
    pub path: String,
    /// git's mode: 0o100644 file, 0o100755 executable, 0o120000 symbolic link,
    /// 0o040000 directory, 0o160000 submodule.
    pub mode: u32,
    pub kind: EntryKind,
    /// The object id, in hexadecimal.
    pub oid: String,
}

/// [`TreeEntry::mode`] of a symbolic link; its blob holds the target.
pub const MODE_SYMLINK: u32 = 0o120000;
/// [`TreeEntry::mode`] of a submodule (gitlink).
pub const MODE_SUBMODULE: u32 = 0o160000;
/// [`TreeEntry::mode`] of an executable file.
pub const MODE_EXECUTABLE: u32 = 0o100755;
/// [`TreeEntry::mode`] of a directory.
pub const MODE_DIRECTORY: u32 = 0o040000;

impl TreeEntry {
    pub fn is_symlink(&self) -> bool {
        self.mode == MODE_SYMLINK
    }

    pub fn is_submodule(&self) -> bool {
        self.mode == MODE_SUBMODULE
    }
}

impl Repo {
    /// Opens the repository containing `path` (a work tree, any directory inside it, or a
    /// bare repository).
    ///
    /// Fails with [`GitError::NotARepository`] when `path` is not a directory inside a
    /// repository, including when it is inside a `.git` directory of a non-bare repository.
    pub fn open(path: &Path) -> Result<Repo, GitError> {
        let not_a_repository = |detail: String| GitError::NotARepository {
            path: path.to_path_buf(),
            detail,
        };
        if !path.is_dir() {
            return Err(not_a_repository("no such directory".to_owned()));
        }
        let finished = Git::discover(path)
            .args([
                "rev-parse",
                "--path-format=absolute",
                "--is-bare-repository",
                "--git-dir",
                "--git-common-dir",
                "--show-object-format",
            ])
            .run_with_status()?;
        if !finished.status.success() {
            return Err(not_a_repository(stderr_excerpt(&finished.stderr)));
        }
        let args = finished.args.clone();
        let lines = output_lines(&finished.stdout);
        let [bare, git_dir, common_dir, object_format] = lines[..] else {
            return Err(unexpected(&args, "expected four lines from rev-parse"));
        };
        let bare = bare == b"true";
        let object_format = match object_format {
            b"sha1" => ObjectFormat::Sha1,
            b"sha256" => ObjectFormat::Sha256,
            other => {
                return Err(unexpected(
                    &args,
                    format!("unknown object format {:?}", String::from_utf8_lossy(other)),
                ));
            }
        };
        let git_dir = path_from_bytes(git_dir);
        let common_dir = path_from_bytes(common_dir);
        let root = if bare {
            git_dir.clone()
        } else {
            let finished = Git::discover(path)
                .args(["rev-parse", "--path-format=absolute", "--show-toplevel"])
                .run_with_status()?;
            if !finished.status.success() {
                return Err(not_a_repository(format!(
                    "{} (open the work tree, not its git directory)",
                    stderr_excerpt(&finished.stderr)
                )));
            }
            match output_lines(&finished.stdout)[..] {
                [top] => path_from_bytes(top),
                _ => return Err(unexpected(&finished.args, "expected one line")),
            }
        };
        Ok(Repo {
            objects: Arc::new(ObjectReader::new(git_dir.clone())),
            trees: Arc::default(),
            root,
            git_dir,
            common_dir,
            object_format,
            bare,
        })
    }

    /// The top of the work tree, or the git directory of a bare repository.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The git directory (for a linked worktree, its own private one).
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// The directory holding the repository's objects, shared by all its worktrees.
    /// Workspaces borrow objects from here instead of copying them.
    pub fn objects_dir(&self) -> PathBuf {
        self.common_dir.join("objects")
    }

    pub fn is_bare(&self) -> bool {
        self.bare
    }

    pub fn object_format(&self) -> ObjectFormat {
        self.object_format
    }

    /// The commit named by `rev` (a branch, tag, commit id or other single-commit
    /// expression; tags are peeled).
    ///
    /// Revisions that git could read as an option or a range are refused with
    /// [`GitError::InvalidRevision`] before git runs; a revision naming nothing, or a tree
    /// or blob, is [`GitError::UnknownRevision`].
    pub fn resolve_commit(&self, rev: &str) -> Result<CommitId, GitError> {
        check_revision(rev)?;
        match self.objects.info(&format!("{rev}^{{commit}}"))? {
            Answer::Found { oid, .. } => CommitId::from_str(&oid).map_err(|_| {
                unexpected(
                    "cat-file --batch-command",
                    format!("{oid:?} is not a commit id"),
                )
            }),
            Answer::Missing => Err(GitError::UnknownRevision {
                rev: rev.to_owned(),
            }),
            Answer::Ambiguous => Err(GitError::InvalidRevision {
                rev: rev.to_owned(),
                reason: "is ambiguous: it names several objects; use a longer commit id",
            }),
        }
    }

    /// The branch HEAD points at, or `None` when HEAD is detached.
    pub fn current_branch(&self) -> Result<Option<String>, GitError> {
        let finished = self
            .git()
            .args(["symbolic-ref", "--quiet", "HEAD"])
            .run_with_status()?;
        match finished.status.code() {
            Some(0) => {
                let text = String::from_utf8_lossy(&finished.stdout);
                let name = text.trim_end_matches('\n');
                Ok(Some(
                    name.strip_prefix("refs/heads/").unwrap_or(name).to_owned(),
                ))
            }
            Some(1) => Ok(None),
            _ => Err(finished.into_error()),
        }
    }

    /// The entries of `commit`'s tree for each of `paths` and for every directory on the
    /// way to it, sorted by path, each once. A path or ancestor that does not exist has no
    /// entry, and nothing below a non-directory is listed: when `a` is a symbolic link,
    /// `a/b` yields only the entry for `a` (mode 0o120000), so callers can see that a write
    /// to `a/b` would go through a link or into a submodule.
    ///
    /// Each directory involved comes from the tree cache, or is read once through the
    /// long-lived object reader.
    pub fn tree_entries(
        &self,
        commit: &CommitId,
        paths: &[&str],
    ) -> Result<Vec<TreeEntry>, GitError> {
        for path in paths {
            check_repository_path(path)?;
        }
        let mut wanted: BTreeSet<&str> = BTreeSet::new();
        for path in paths {
            for (index, _) in path.match_indices('/') {
                wanted.insert(&path[..index]);
            }
            wanted.insert(path);
        }
        // Each directory's listing, looked up once. A directory below something that is
        // not a directory has none (git does not follow links inside trees), which is
        // what keeps anything below a link or a submodule unlisted.
        let mut listings: BTreeMap<&str, Option<Arc<Vec<RawEntry>>>> = BTreeMap::new();
        let mut entries = Vec::new();
        for path in wanted {
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
            if !listings.contains_key(parent) {
                listings.insert(parent, self.listing(commit, parent)?);
            }
            let Some(Some(listing)) = listings.get(parent) else {
                continue;
            };
            if let Some(entry) = listing.iter().find(|entry| entry.name == name.as_bytes()) {
                entries.push(TreeEntry {
                    path: path.to_owned(),
                    mode: entry.mode,
                    kind: match entry.mode {
                        MODE_DIRECTORY => EntryKind::Tree,
                        MODE_SUBMODULE => EntryKind::Commit,
                        _ => EntryKind::Blob,
                    },
                    oid: entry.oid.clone(),
                });
            }
        }
        Ok(entries)
    }

    /// The contents of the blob at each `commit:path`, in the order asked; `None` where
    /// the path does not exist, is a directory or submodule, or lies below a symbolic link
    /// (git does not follow links inside trees). A symbolic link itself is a blob whose
    /// content is its target.
    ///
    /// Served by the long-lived object reader (one request per blob; the directories come
    /// from the tree cache): no git process starts.
    pub fn read_files(
        &self,
        commit: &CommitId,
        paths: &[&str],
    ) -> Result<Vec<Option<Vec<u8>>>, GitError> {
        for path in paths {
            check_repository_path(path)?;
        }
        paths
            .iter()
            .map(|path| {
                let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
                let Some(listing) = self.listing(commit, parent)? else {
                    return Ok(None);
                };
                let Some(entry) = listing.iter().find(|entry| entry.name == name.as_bytes()) else {
                    return Ok(None);
                };
                if matches!(entry.mode, MODE_DIRECTORY | MODE_SUBMODULE) {
                    return Ok(None);
                }
                match self.objects.contents(&entry.oid)? {
                    Answer::Found { kind, content, .. } if kind == "blob" => Ok(Some(content)),
                    _ => Ok(None),
                }
            })
            .collect()
    }

    /// The entries of the directory `dir` ("" for the root) of `commit`'s tree, or `None`
    /// when `commit` is not a commit, or `dir` or one of its ancestors is missing or not a
    /// directory (a file, a symbolic link, a submodule): exactly when git's `commit:dir`
    /// would not name a tree. `dir` must have passed `check_repository_path`.
    fn listing(
        &self,
        commit: &CommitId,
        dir: &str,
    ) -> Result<Option<Arc<Vec<RawEntry>>>, GitError> {
        let Some(mut tree) = self.root_tree(commit)? else {
            return Ok(None);
        };
        if !dir.is_empty() {
            for component in dir.split('/') {
                let Some(entry) = tree.iter().find(|entry| {
                    entry.name == component.as_bytes() && entry.mode == MODE_DIRECTORY
                }) else {
                    return Ok(None);
                };
                let oid = entry.oid.clone();
                match self.tree(&oid)? {
                    Some(child) => tree = child,
                    None => return Ok(None),
                }
            }
        }
        Ok(Some(tree))
    }

    /// The root directory's entries of `commit`, `None` when it is not a commit.
    fn root_tree(&self, commit: &CommitId) -> Result<Option<Arc<Vec<RawEntry>>>, GitError> {
        let known = self.tree_cache().roots.get(commit).cloned();
        let oid = match known {
            Some(oid) => oid,
            None => match self.objects.info(&format!("{commit}^{{tree}}"))? {
                Answer::Found { oid, kind, .. } if kind == "tree" => {
                    let mut cache = self.tree_cache();
                    if cache.roots.len() >= TREE_CACHE_COMMITS {
                        cache.roots.clear();
                    }
                    cache.roots.insert(commit.clone(), oid.clone());
                    oid
                }
                _ => return Ok(None),
            },
        };
        self.tree(&oid)
    }

    /// The entries of the tree object `oid`, `None` when it is not a tree.
    fn tree(&self, oid: &str) -> Result<Option<Arc<Vec<RawEntry>>>, GitError> {
        if let Some(tree) = self.tree_cache().trees.get(oid) {
            return Ok(Some(tree.clone()));
        }
        let Answer::Found { kind, content, .. } = self.objects.contents(oid)? else {
            return Ok(None);
        };
        if kind != "tree" {
            return Ok(None);
        }
        let tree = Arc::new(parse_tree_object(&content, self.object_format)?);
        let mut cache = self.tree_cache();
        if cache.entries + tree.len() > TREE_CACHE_ENTRIES {
            cache.trees.clear();
            cache.entries = 0;
        }
        cache.entries += tree.len();
        if let Some(replaced) = cache.trees.insert(oid.to_owned(), tree.clone()) {
            cache.entries -= replaced.len();
        }
        Ok(Some(tree))
    }

    fn tree_cache(&self) -> std::sync::MutexGuard<'_, TreeCache> {
        // The cache is consistent after any panic (each update is one insert or clear).
        self.trees.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The change from `base` to `head` as a binary-safe unified diff with full object ids
    /// and rename detection (`a/` and `b/` prefixes), as `git diff --binary --full-index -M`
    /// prints it. Diff drivers, text conversion and colour from the repository's
    /// configuration are not used.
    pub fn diff(&self, base: &CommitId, head: &CommitId) -> Result<Vec<u8>, GitError> {
        self.git()
            .args([
                "diff-tree",
                "-p",
                "-r",
                "-M",
                "--binary",
                "--full-index",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                "--src-prefix=a/",
                "--dst-prefix=b/",
            ])
            .arg(base.as_str())
            .arg(head.as_str())
            .run()
    }

    /// The best common ancestor of `a` and `b`, or `None` when their histories are
    /// unrelated.
    pub fn merge_base(&self, a: &CommitId, b: &CommitId) -> Result<Option<CommitId>, GitError> {
        let finished = self
            .git()
            .arg("merge-base")
            .arg(a.as_str())
            .arg(b.as_str())
            .run_with_status()?;
        match finished.status.code() {
            Some(0) => single_commit_id(&finished.args, &finished.stdout).map(Some),
            Some(1) if finished.stdout.is_empty() => Ok(None),
            _ => Err(finished.into_error()),
        }
    }

    /// Every file, symbolic link and submodule path in `commit`'s tree, sorted as git
    /// sorts them. Paths that are not UTF-8 are converted lossily.
    pub fn list_files(&self, commit: &CommitId) -> Result<Vec<String>, GitError> {
        let stdout = self
            .git()
            .args(["ls-tree", "-r", "-z", "--full-tree", "--name-only"])
            .arg(commit.as_str())
            .run()?;
        Ok(stdout
            .split(|&byte| byte == 0)
            .filter(|path| !path.is_empty())
            .map(|path| String::from_utf8_lossy(path).into_owned())
            .collect())
    }

    fn git(&self) -> Git {
        Git::for_repository(&self.git_dir)
    }
}

/// Creates a repository at `root` whose `branch` has a single commit, with `message`,
/// holding `files` as (path, content, executable). `root` is created if needed and must
/// not hold a repository yet. For the demo and tests, which must not run git themselves:
/// it writes only a repository it creates.
pub fn init_repository(
    root: &Path,
    branch: &str,
    files: &[(&str, &[u8], bool)],
    message: &str,
) -> Result<Repo, GitError> {
    check_revision(branch)?;
    let mut seen = BTreeSet::new();
    for (path, _, _) in files {
        check_repository_path(path)?;
        if !seen.insert(*path) {
            return Err(GitError::InvalidChange {
                reason: format!("{path:?} is given more than once"),
            });
        }
    }
    if root.join(".git").exists() {
        return Err(GitError::AlreadyARepository {
            path: root.to_path_buf(),
        });
    }
    std::fs::create_dir_all(root).map_err(|e| GitError::io("create", root, e))?;
    Git::new(root)
        .args(["init", "--quiet"])
        .arg(format!("--initial-branch={branch}"))
        .run()?;
    for (path, content, executable) in files {
        let mode = if *executable {
            FileMode::Executable
        } else {
            FileMode::Regular
        };
        write_file(root, path, content, mode)?;
    }
    Git::new(root).args(["add", "--all"]).run()?;
    Git::new(root)
        .args([
            "-c",
            "user.name=airlock",
            "-c",
            "user.email=airlock@localhost",
            "-c",
            "commit.gpgSign=false",
            "commit",
            "--quiet",
            "--no-verify",
            "--allow-empty",
            "-m",
        ])
        .arg(message)
        .run()?;
    Repo::open(root)
}

fn single_commit_id(args: &str, stdout: &[u8]) -> Result<CommitId, GitError> {
    match output_lines(stdout)[..] {
        [line] => std::str::from_utf8(line)
            .ok()
            .and_then(|text| CommitId::from_str(text).ok())
            .ok_or_else(|| unexpected(args, "expected a commit id")),
        _ => Err(unexpected(args, "expected one line")),
    }
}

/// Output lines without their terminators; a trailing newline does not make an empty line.
fn output_lines(stdout: &[u8]) -> Vec<&[u8]> {
    let stdout = stdout.strip_suffix(b"\n").unwrap_or(stdout);
    if stdout.is_empty() {
        return Vec::new();
    }
    stdout.split(|&byte| byte == b'\n').collect()
}

fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

pub(crate) fn unexpected(args: &str, detail: impl Into<String>) -> GitError {
    GitError::UnexpectedOutput {
        args: args.to_owned(),
        detail: detail.into(),
    }
}

/// One entry of a tree object.
#[derive(Debug)]
struct RawEntry {
    name: Vec<u8>,
    mode: u32,
    oid: String,
}

/// Parses a tree object: entries of `<octal mode> SP <name> NUL <raw object id>`.
fn parse_tree_object(content: &[u8], format: ObjectFormat) -> Result<Vec<RawEntry>, GitError> {
    let oid_len = match format {
        ObjectFormat::Sha1 => 20,
        ObjectFormat::Sha256 => 32,
    };
    let bad = || unexpected("cat-file --batch-command", "a malformed tree object");
    let mut entries = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let mode = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .ok_or_else(bad)?;
        rest = &rest[space + 1..];
        let nul = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
        let name = rest[..nul].to_vec();
        rest = &rest[nul + 1..];
        if rest.len() < oid_len {
            return Err(bad());
        }
        let oid = rest[..oid_len].iter().map(|b| format!("{b:02x}")).collect();
        rest = &rest[oid_len..];
        entries.push(RawEntry { name, mode, oid });
    }
    Ok(entries)
}
