//! A pool of isolated, reusable workspaces where changes are applied and checked.
//!
//! Layout under the pool's root, one directory per workspace, named by index:
//!
//! ```text
//! <root>/ws-N.lock    held (flock) by whoever uses ws-N, in this or another process
//! <root>/ws-N/git     private bare git directory; objects borrowed from the user's
//!                     repository through objects/info/alternates, nothing copied
//! <root>/ws-N/tree    the work tree: the only directory checks may write to
//! <root>/ws-N/clean   marker: "this tree is exactly <commit>", written after a verified reset
//! ```
//!
//! The git directory lives beside the tree, not inside it, so a check cannot plant hooks or
//! configuration that airlock's own later git calls would read. The user's repository is
//! never written: no worktree is registered in it and nothing is fetched into it.
//!
//! Cost model: taking a workspace that is clean at the wanted base runs no git process and
//! walks nothing; moving a clean workspace to another base rewrites only the files that
//! differ (git still reads and rewrites its index); the tree-wide reset and verification
//! happen in [`Workspace::release`], after the verdict.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::command::Git;
use crate::repo::unexpected;
use crate::tree_fs::{
    delete_file, destroy, remove_if_present, remove_trash, repair_permissions, write_file,
};
use crate::validate::check_repository_path;
use crate::{CommitId, GitError, Repo};

/// One file of a change, as it must be after the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWrite {
    /// A relative, '/'-separated path (checked again before anything is written).
    pub path: String,
    /// The new content, or `None` to delete the file. For a symbolic link, the target.
    pub content: Option<Vec<u8>>,
    pub mode: FileMode,
}

/// The kind of file a [`FileWrite`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    Regular,
    Executable,
    Symlink,
}

/// Counts of how workspaces were prepared since the pool was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Taken clean at the wanted base: nothing to do.
    pub reused: u64,
    /// Taken clean at another base and moved by rewriting the files that differ.
    pub moved: u64,
    /// Taken dirty (dropped without release, or left by a crash) and reset in full.
    pub reset: u64,
    /// Created from nothing (first use, or after one was destroyed).
    pub created: u64,
    /// Destroyed because a reset failed.
    pub destroyed: u64,
}

/// A bounded pool of workspaces for one repository, shared by worker threads.
///
/// Workspaces are also locked on disk (flock), so several processes may share one root;
/// a lock dies with its process, and a workspace left without its clean marker by a
/// crash is reset before it is used again.
#[derive(Debug, Clone)]
pub struct WorkspacePool {
    shared: Arc<PoolShared>,
}

#[derive(Debug)]
struct PoolShared {
    repo: Repo,
    root: PathBuf,
    /// Recorded in alternates and markers; a workspace made for another repository is
    /// never taken as clean.
    objects_dir: PathBuf,
    slots: Mutex<Slots>,
    slot_freed: Condvar,
    reused: AtomicU64,
    moved: AtomicU64,
    reset: AtomicU64,
    created: AtomicU64,
    destroyed: AtomicU64,
}

#[derive(Debug)]
struct Slots {
    slots: Vec<Slot>,
    clock: u64,
    /// Blocking acquires waiting for a workspace: `try_acquire` leaves freed ones to them.
    waiting: usize,
}

/// What this process believes about one workspace. The marker on disk, read under the
/// workspace's lock, is the truth; this only guides which one to try first.
#[derive(Debug, Default, Clone)]
struct Slot {
    on_disk: bool,
    busy: bool,
    clean_at: Option<CommitId>,
    last_used: u64,
}

/// How often a waiting `acquire` looks again for workspaces held by other processes,
/// whose release this process is not told about.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

impl WorkspacePool {
    /// Opens (creating if needed) a pool of at most `capacity` workspaces under `root`.
    ///
    /// Existing workspaces are kept: those carrying a clean marker for this repository are
    /// reused as they are, any other is reset before use. `root` should be outside the
    /// user's work tree, or ignored by it, since workspaces are written there.
    pub fn open(repo: &Repo, root: PathBuf, capacity: usize) -> Result<Self, GitError> {
        if capacity == 0 {
            return Err(GitError::InvalidCapacity { capacity });
        }
        fs::create_dir_all(&root).map_err(|e| GitError::io("create", &root, e))?;
        let root = fs::canonicalize(&root).map_err(|e| GitError::io("resolve", &root, e))?;
        // Canonical, so the same repository opened through another path still finds its
        // workspaces clean.
        let objects_dir = repo.objects_dir();
        let objects_dir =
            fs::canonicalize(&objects_dir).map_err(|e| GitError::io("resolve", &objects_dir, e))?;
        remove_trash(&root);
        let slots = (0..capacity)
            .map(|index| {
                let paths = SlotPaths::new(&root, index);
                let on_disk = paths.dir.is_dir();
                Slot {
                    on_disk,
                    busy: false,
                    clean_at: if on_disk {
                        read_marker(&paths, &objects_dir)
                    } else {
                        None
                    },
                    last_used: 0,
                }
            })
            .collect();
        Ok(WorkspacePool {
            shared: Arc::new(PoolShared {
                repo: repo.clone(),
                root,
                objects_dir,
                slots: Mutex::new(Slots {
                    slots,
                    clock: 0,
                    waiting: 0,
                }),
                slot_freed: Condvar::new(),
                reused: AtomicU64::new(0),
                moved: AtomicU64::new(0),
                reset: AtomicU64::new(0),
                created: AtomicU64::new(0),
                destroyed: AtomicU64::new(0),
            }),
        })
    }

    /// The pool's state directory (canonical).
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// A workspace whose tree holds exactly `base` and nothing else.
    ///
    /// In order of preference: an idle workspace already clean at `base` (no git process,
    /// no tree walk); the least recently used idle clean workspace, moved to `base`
    /// (rewrites only the files that differ); an idle dirty one, reset in full; a new one,
    /// while fewer than `capacity` exist. A workspace whose move or reset fails is
    /// destroyed and created again.
    ///
    /// Blocks while all `capacity` workspaces are in use, by this process or another one
    /// sharing the root; [`WorkspacePool::try_acquire`] does not wait.
    pub fn acquire(&self, base: &CommitId) -> Result<Workspace, GitError> {
        let workspace = self.acquire_inner(base, true)?;
        Ok(workspace.expect("a blocking acquire returns only with a workspace"))
    }

    /// Like [`WorkspacePool::acquire`], but `Ok(None)` instead of waiting when every
    /// workspace is in use, or when a blocking `acquire` is waiting (it comes first).
    pub fn try_acquire(&self, base: &CommitId) -> Result<Option<Workspace>, GitError> {
        self.acquire_inner(base, false)
    }

    /// How workspaces were prepared since the pool was opened.
    pub fn stats(&self) -> PoolStats {
        let shared = &self.shared;
        PoolStats {
            reused: shared.reused.load(Ordering::Relaxed),
            moved: shared.moved.load(Ordering::Relaxed),
            reset: shared.reset.load(Ordering::Relaxed),
            created: shared.created.load(Ordering::Relaxed),
            destroyed: shared.destroyed.load(Ordering::Relaxed),
        }
    }

    fn acquire_inner(&self, base: &CommitId, wait: bool) -> Result<Option<Workspace>, GitError> {
        let shared = &self.shared;
        let mut locked_elsewhere = HashSet::new();
        let mut waited = false;
        loop {
            let mut slots = shared.lock_slots();
            let choice = if wait || slots.waiting == 0 {
                choose_slot(&slots.slots, base, &locked_elsewhere)
            } else {
                None
            };
            let Some(index) = choice else {
                if !wait {
                    return Ok(None);
                }
                if !waited {
                    waited = true;
                    slots.waiting += 1;
                }
                // Workspaces locked by another process may be free by now.
                locked_elsewhere.clear();
                drop(
                    shared
                        .slot_freed
                        .wait_timeout(slots, RETRY_INTERVAL)
                        .unwrap_or_else(|poisoned| poisoned.into_inner()),
                );
                continue;
            };
            if waited {
                waited = false;
                slots.waiting -= 1;
            }
            slots.clock += 1;
            let clock = slots.clock;
            let slot = &mut slots.slots[index];
            slot.busy = true;
            slot.last_used = clock;
            drop(slots);

            let claim = Claim {
                shared: Arc::clone(shared),
                index,
                armed: true,
                clean_at: None,
            };
            match shared.take(claim, base)? {
                Some(workspace) => return Ok(Some(workspace)),
                None => {
                    locked_elsewhere.insert(index);
                }
            }
        }
    }
}

/// The idle workspace to try for `base`, in the order documented on `acquire`.
fn choose_slot(slots: &[Slot], base: &CommitId, skip: &HashSet<usize>) -> Option<usize> {
    let idle = |index: &usize| !slots[*index].busy && !skip.contains(index);
    let indexes = || (0..slots.len()).filter(idle);
    let least_recent = |candidates: Vec<usize>| {
        candidates
            .into_iter()
            .min_by_key(|&index| slots[index].last_used)
    };
    indexes()
        .find(|&i| slots[i].on_disk && slots[i].clean_at.as_ref() == Some(base))
        .or_else(|| {
            least_recent(
                indexes()
                    .filter(|&i| slots[i].on_disk && slots[i].clean_at.is_some())
                    .collect(),
            )
        })
        .or_else(|| least_recent(indexes().filter(|&i| slots[i].on_disk).collect()))
        .or_else(|| indexes().find(|&i| !slots[i].on_disk))
}

/// A slot marked busy by this process. Dropped while armed (an error or panic while
/// preparing), it returns the slot as dirty, so the next user resets or recreates it.
struct Claim {
    shared: Arc<PoolShared>,
    index: usize,
    armed: bool,
    /// Set while the workspace is known to be clean at this commit (marker still on disk).
    clean_at: Option<CommitId>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.armed {
            let on_disk = self.shared.paths(self.index).dir.exists();
            self.shared
                .free_slot(self.index, on_disk, self.clean_at.take());
        }
    }
}

/// Where a workspace is on disk.
#[derive(Debug, Clone)]
struct SlotPaths {
    dir: PathBuf,
    git_dir: PathBuf,
    tree: PathBuf,
    marker: PathBuf,
    lock: PathBuf,
}

impl SlotPaths {
    fn new(root: &Path, index: usize) -> SlotPaths {
        let dir = root.join(format!("ws-{index}"));
        SlotPaths {
            git_dir: dir.join("git"),
            tree: dir.join("tree"),
            marker: dir.join("clean"),
            lock: root.join(format!("ws-{index}.lock")),
            dir,
        }
    }

    fn git(&self) -> Git {
        Git::for_workspace(&self.dir, &self.git_dir, &self.tree)
    }
}

impl PoolShared {
    fn lock_slots(&self) -> MutexGuard<'_, Slots> {
        // The slot table stays consistent even if a holder panicked: every update is a
        // single assignment.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn paths(&self, index: usize) -> SlotPaths {
        SlotPaths::new(&self.root, index)
    }

    fn free_slot(&self, index: usize, on_disk: bool, clean_at: Option<CommitId>) {
        let mut slots = self.lock_slots();
        let slot = &mut slots.slots[index];
        slot.busy = false;
        slot.on_disk = on_disk;
        slot.clean_at = clean_at;
        drop(slots);
        self.slot_freed.notify_one();
    }

    /// Prepares the claimed workspace at `base`; `Ok(None)` when another process holds it.
    fn take(&self, mut claim: Claim, base: &CommitId) -> Result<Option<Workspace>, GitError> {
        let paths = self.paths(claim.index);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&paths.lock)
            .map_err(|e| GitError::io("open", &paths.lock, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // Another process uses it, so what this process believed about it is
                // stale; the caller skips it for this attempt.
                claim.armed = false;
                let on_disk = paths.dir.exists();
                self.free_slot(claim.index, on_disk, None);
                return Ok(None);
            }
            Err(TryLockError::Error(error)) => {
                return Err(GitError::io("lock", &paths.lock, error));
            }
        }

        // Under the lock, the disk is the truth. The marker goes before anything changes,
        // so a crash from here on leaves the workspace marked dirty.
        let clean_at = if paths.dir.is_dir() {
            read_marker(&paths, &self.objects_dir)
        } else {
            None
        };
        let existed = paths.dir.is_dir();
        if clean_at.as_ref() != Some(base) {
            // Moving, resetting or creating for a commit the repository lacks would fail
            // half-way and throw away a good workspace: check first, so that this input
            // error leaves the workspace as it was (and the claim returns it as such).
            claim.clean_at = clean_at.clone();
            let found = self.repo.resolve_commit(base.as_str())?;
            if &found != base {
                return Err(GitError::UnknownRevision {
                    rev: base.to_string(),
                });
            }
        }
        claim.clean_at = None;
        remove_if_present(&paths.marker)?;

        match clean_at {
            Some(at) if &at == base => {
                self.reused.fetch_add(1, Ordering::Relaxed);
            }
            Some(at) => {
                if self.move_tree(&paths, &at, base).is_ok() {
                    self.moved.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.reset_or_recreate(&paths, base)?;
                }
            }
            None if existed => self.reset_or_recreate(&paths, base)?,
            None => {
                self.create(&paths, base)?;
                self.created.fetch_add(1, Ordering::Relaxed);
            }
        }

        claim.armed = false;
        Ok(Some(Workspace {
            shared: claim.shared.clone(),
            index: claim.index,
            paths,
            base: base.clone(),
            _lock: lock,
            returned: false,
        }))
    }

    fn reset_or_recreate(&self, paths: &SlotPaths, base: &CommitId) -> Result<(), GitError> {
        match self.restore(paths, base) {
            Ok(()) => {
                self.reset.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(_) => {
                destroy(&self.root, &paths.dir)?;
                self.destroyed.fetch_add(1, Ordering::Relaxed);
                self.create(paths, base)?;
                self.created.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Creates a workspace at `base` from nothing.
    fn create(&self, paths: &SlotPaths, base: &CommitId) -> Result<(), GitError> {
        if fs::symlink_metadata(&paths.dir).is_ok() {
            destroy(&self.root, &paths.dir)?;
        }
        fs::create_dir(&paths.dir).map_err(|e| GitError::io("create", &paths.dir, e))?;
        let mut init = Git::new(&paths.dir).args([
            "init",
            "--quiet",
            "--bare",
            "--template=",
            "--initial-branch=airlock",
        ]);
        if self.repo.object_format() != crate::ObjectFormat::Sha1 {
            init = init.arg(format!(
                "--object-format={}",
                self.repo.object_format().as_str()
            ));
        }
        init.arg(&paths.git_dir).run()?;
        write_alternates(&paths.git_dir, &self.objects_dir)?;
        let config = paths.git_dir.join("config");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&config)
            .map_err(|e| GitError::io("open", &config, e))?;
        // Later keys win in git configuration, so this overrides what `init --bare` wrote.
        // skipHash: the index is rewritten on every move and reset, and only airlock reads it.
        file.write_all(
            b"[core]\n\tbare = false\n\tlogAllRefUpdates = false\n\
              [index]\n\tskipHash = true\n[gc]\n\tauto = 0\n",
        )
        .map_err(|e| GitError::io("write", &config, e))?;
        fs::create_dir(&paths.tree).map_err(|e| GitError::io("create", &paths.tree, e))?;
        paths
            .git()
            .args(["read-tree", "-m", "-u"])
            .arg(base.as_str())
            .run()?;
        set_head(paths, base)
    }

    /// Moves a clean workspace from `from` to `to`, writing only the files that differ.
    fn move_tree(&self, paths: &SlotPaths, from: &CommitId, to: &CommitId) -> Result<(), GitError> {
        check_tree_is_directory(paths)?;
        paths
            .git()
            .args(["read-tree", "-m", "-u"])
            .arg(from.as_str())
            .arg(to.as_str())
            .run()?;
        set_head(paths, to)
    }

    /// Brings any workspace, however a check left it, to exactly `base`: permissions that
    /// would stop the reset are repaired, untracked and ignored files removed, tracked files
    /// restored, and the result verified.
    fn restore(&self, paths: &SlotPaths, base: &CommitId) -> Result<(), GitError> {
        check_tree_is_directory(paths)?;
        repair_permissions(&paths.tree);
        // Left by a git process killed with the workspace (this process holds the lock,
        // so no other airlock git runs here).
        for stale in ["index.lock", "HEAD.lock"] {
            remove_if_present(&paths.git_dir.join(stale))?;
        }
        write_alternates(&paths.git_dir, &self.objects_dir)?;
        paths.git().args(["clean", "-ffdxq"]).run()?;
        paths
            .git()
            .args(["reset", "--quiet", "--hard", "--no-recurse-submodules"])
            .arg(base.as_str())
            .arg("--")
            .run()?;
        let remaining = status(paths)?;
        if !remaining.is_empty() {
            return Err(GitError::NotClean {
                path: paths.tree.clone(),
                base: base.clone(),
                paths: remaining.into_iter().take(20).collect(),
            });
        }
        Ok(())
    }
}

/// A workspace taken from the pool, holding its base commit until the change is written.
///
/// Dropped without [`Workspace::release`] (an error path, a panic), it goes back to the pool
/// marked dirty and is reset before its next use.
#[derive(Debug)]
pub struct Workspace {
    shared: Arc<PoolShared>,
    index: usize,
    paths: SlotPaths,
    base: CommitId,
    /// Held for the workspace's whole use; closing it releases the on-disk lock.
    _lock: File,
    returned: bool,
}

impl Workspace {
    /// The directory the checks run in; the only one they should be allowed to write.
    /// It holds no `.git`: git commands run in it find no repository of the workspace
    /// (only an enclosing one, if the pool's root lies inside some work tree).
    pub fn tree(&self) -> &Path {
        &self.paths.tree
    }

    /// The workspace's private git directory, outside [`Workspace::tree`].
    pub fn git_dir(&self) -> &Path {
        &self.paths.git_dir
    }

    /// The commit the tree held when the workspace was taken.
    pub fn base(&self) -> &CommitId {
        &self.base
    }

    /// Writes a change into the tree: deletions first, then writes, creating parent
    /// directories and removing directories a deletion leaves empty.
    ///
    /// Every path is checked before anything is written. A write never goes through a
    /// symbolic link: when a parent component is a link (or a file), the write is refused
    /// with [`GitError::UnsafeWrite`]. An existing file or link at the path is replaced, not
    /// written through. On error the tree may hold part of the change; release the
    /// workspace to reset it.
    pub fn apply(&mut self, writes: &[FileWrite]) -> Result<(), GitError> {
        let mut seen = HashSet::new();
        for write in writes {
            check_repository_path(&write.path)?;
            if !seen.insert(write.path.as_str()) {
                return Err(GitError::InvalidChange {
                    reason: format!("{:?} is written more than once", write.path),
                });
            }
            if let (FileMode::Symlink, Some(target)) = (write.mode, &write.content)
                && (target.is_empty() || target.contains(&0))
            {
                return Err(GitError::InvalidChange {
                    reason: format!(
                        "the symbolic link {:?} needs a non-empty target without NUL bytes",
                        write.path
                    ),
                });
            }
        }
        let tree = &self.paths.tree;
        for write in writes.iter().filter(|write| write.content.is_none()) {
            delete_file(tree, &write.path)?;
        }
        for write in writes {
            if let Some(content) = &write.content {
                write_file(tree, &write.path, content, write.mode)?;
            }
        }
        Ok(())
    }

    /// The paths that differ from the base right now: modified or deleted tracked files and
    /// every untracked file, ignored ones included, sorted. Empty directories are not
    /// listed. Walks the whole tree.
    pub fn status(&self) -> Result<Vec<String>, GitError> {
        status(&self.paths)
    }

    /// Gives the workspace back after a run. The tree is reset to exactly the base
    /// (permissions repaired, untracked and ignored files removed, tracked files restored),
    /// verified with a status check, and marked clean on disk, so the next change at this
    /// base starts without any git work.
    ///
    /// When the reset or verification fails, the workspace is destroyed and created again
    /// on a later acquire; that is still `Ok`. An error means the workspace could not even
    /// be removed; it stays in the pool marked dirty.
    pub fn release(mut self) -> Result<(), GitError> {
        self.returned = true;
        let shared = Arc::clone(&self.shared);
        let paths = self.paths.clone();
        match shared
            .restore(&paths, &self.base)
            .and_then(|()| write_marker(&paths, &self.base, &shared.objects_dir))
        {
            Ok(()) => {
                shared.free_slot(self.index, true, Some(self.base.clone()));
                Ok(())
            }
            Err(_) => match destroy(&shared.root, &paths.dir) {
                Ok(()) => {
                    shared.destroyed.fetch_add(1, Ordering::Relaxed);
                    shared.free_slot(self.index, false, None);
                    Ok(())
                }
                Err(error) => {
                    shared.free_slot(self.index, true, None);
                    Err(error)
                }
            },
        }
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if !self.returned {
            self.shared.free_slot(self.index, true, None);
        }
    }
}

fn status(paths: &SlotPaths) -> Result<Vec<String>, GitError> {
    let git = paths.git().args([
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--ignored=traditional",
        "--no-renames",
        "--ignore-submodules=none",
    ]);
    let args = git.describe();
    let stdout = git.run()?;
    let mut changed = Vec::new();
    for record in stdout.split(|&byte| byte == 0).filter(|r| !r.is_empty()) {
        // "XY path": two status letters and a space.
        let path = record
            .get(3..)
            .filter(|path| !path.is_empty())
            .ok_or_else(|| unexpected(&args, "a status entry without a path"))?;
        changed.push(String::from_utf8_lossy(path).into_owned());
    }
    changed.sort();
    changed.dedup();
    Ok(changed)
}

fn set_head(paths: &SlotPaths, commit: &CommitId) -> Result<(), GitError> {
    paths
        .git()
        .args(["update-ref", "--no-deref", "HEAD"])
        .arg(commit.as_str())
        .run()
        .map(drop)
}

/// git would follow a tree replaced by a symbolic link and reset whatever it points at.
fn check_tree_is_directory(paths: &SlotPaths) -> Result<(), GitError> {
    let metadata =
        fs::symlink_metadata(&paths.tree).map_err(|e| GitError::io("inspect", &paths.tree, e))?;
    if metadata.is_dir() {
        Ok(())
    } else {
        Err(GitError::UnsafeWrite {
            path: paths.tree.display().to_string(),
            reason: "the workspace tree is no longer a directory".to_owned(),
        })
    }
}

fn write_alternates(git_dir: &Path, objects_dir: &Path) -> Result<(), GitError> {
    let info = git_dir.join("objects").join("info");
    fs::create_dir_all(&info).map_err(|e| GitError::io("create", &info, e))?;
    let alternates = info.join("alternates");
    let mut line = objects_dir.as_os_str().as_bytes().to_vec();
    line.push(b'\n');
    fs::write(&alternates, line).map_err(|e| GitError::io("write", &alternates, e))
}

fn marker_content(base: &CommitId, objects_dir: &Path) -> Vec<u8> {
    let mut content = format!("base {base}\nobjects ").into_bytes();
    content.extend_from_slice(objects_dir.as_os_str().as_bytes());
    content.push(b'\n');
    content
}

/// The commit a workspace is clean at, or `None` when it carries no marker for this
/// repository's objects.
fn read_marker(paths: &SlotPaths, objects_dir: &Path) -> Option<CommitId> {
    let content = fs::read(&paths.marker).ok()?;
    let text = content.strip_prefix(b"base ")?;
    let newline = text.iter().position(|&byte| byte == b'\n')?;
    let base = CommitId::from_str(std::str::from_utf8(&text[..newline]).ok()?).ok()?;
    (content == marker_content(&base, objects_dir)).then_some(base)
}

fn write_marker(paths: &SlotPaths, base: &CommitId, objects_dir: &Path) -> Result<(), GitError> {
    let temporary = paths.dir.join("clean.tmp");
    fs::write(&temporary, marker_content(base, objects_dir))
        .map_err(|e| GitError::io("write", &temporary, e))?;
    fs::rename(&temporary, &paths.marker).map_err(|e| GitError::io("write", &paths.marker, e))
}
