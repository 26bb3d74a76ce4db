//! File operations on workspace trees: writing a change without ever following a symbolic
//! link, and taking back a tree a check may have locked up (permissions removed, files
//! that cannot be deleted).

use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::GitError;
use crate::workspace::FileMode;

pub(crate) fn remove_if_present(path: &Path) -> Result<(), GitError> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(GitError::io("remove", path, error))
        }
        _ => Ok(()),
    }
}

/// Gives the owner back the rights a check may have taken away (a directory made 000, a
/// file made read-only), without following symbolic links. Best effort: whatever it cannot
/// repair makes the reset fail, and the workspace is recreated.
pub(crate) fn repair_permissions(tree: &Path) {
    // An explicit stack: a check can nest directories deeper than the thread's stack.
    let mut directories = vec![tree.to_path_buf()];
    while let Some(directory) = directories.pop() {
        ensure_owner_bits(&directory, 0o700);
        let Ok(entries) = fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => directories.push(entry.path()),
                Ok(kind) if kind.is_file() => ensure_owner_bits(&entry.path(), 0o600),
                _ => {}
            }
        }
    }
}

pub(crate) fn ensure_owner_bits(path: &Path, bits: u32) {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return;
    };
    let mode = metadata.permissions().mode();
    if !metadata.file_type().is_symlink() && mode & bits != bits {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode((mode | bits) & 0o7777));
    }
}

/// Removes a workspace directory, repairing permissions if needed; if even that fails,
/// moves it aside (renaming within the root needs no rights inside it) so the slot can be
/// created again. Moved-aside directories are removed when a pool is next opened.
pub(crate) fn destroy(root: &Path, dir: &Path) -> Result<(), GitError> {
    let removed = match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            repair_permissions(dir);
            fs::remove_dir_all(dir)
        }
    };
    if removed.is_ok() {
        return Ok(());
    }
    let name = dir.file_name().unwrap_or(OsStr::new("ws"));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let mut trash_name = OsString::from("trash-");
    trash_name.push(name);
    trash_name.push(format!("-{}-{nanos}", std::process::id()));
    let trash = root.join(trash_name);
    fs::rename(dir, &trash).map_err(|e| GitError::io("remove", dir, e))
}

pub(crate) fn remove_trash(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().as_bytes().starts_with(b"trash-") {
            let path = entry.path();
            if fs::remove_dir_all(&path).is_err() {
                repair_permissions(&path);
                let _ = fs::remove_dir_all(&path);
            }
        }
    }
}

/// Checks every component above `path` in `tree` and, when `create` is set, creates the
/// missing ones. Fails when a component is a symbolic link or not a directory.
pub(crate) fn prepare_parents(tree: &Path, path: &str, create: bool) -> Result<(), GitError> {
    for (index, _) in path.match_indices('/') {
        let parent = &path[..index];
        let full = tree.join(parent);
        match fs::symlink_metadata(&full) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                return Err(GitError::UnsafeWrite {
                    path: path.to_owned(),
                    reason: format!("{parent:?} is a symbolic link"),
                });
            }
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(GitError::UnsafeWrite {
                    path: path.to_owned(),
                    reason: format!("{parent:?} is a file, not a directory"),
                });
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if !create {
                    return Err(GitError::InvalidChange {
                        reason: format!("cannot delete {path:?}: {parent:?} does not exist"),
                    });
                }
                fs::create_dir(&full).map_err(|e| GitError::io("create", &full, e))?;
            }
            Err(error) => return Err(GitError::io("inspect", &full, error)),
        }
    }
    Ok(())
}

pub(crate) fn delete_file(tree: &Path, path: &str) -> Result<(), GitError> {
    prepare_parents(tree, path, false)?;
    let full = tree.join(path);
    match fs::symlink_metadata(&full) {
        Ok(metadata) if metadata.is_dir() => {
            return Err(GitError::UnsafeWrite {
                path: path.to_owned(),
                reason: "it is a directory, not a file".to_owned(),
            });
        }
        Ok(_) => fs::remove_file(&full).map_err(|e| GitError::io("remove", &full, e))?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(GitError::InvalidChange {
                reason: format!("cannot delete {path:?}: it does not exist at the base"),
            });
        }
        Err(error) => return Err(GitError::io("inspect", &full, error)),
    }
    // git does not track directories: one emptied by the change is gone after it.
    let mut parent = path;
    while let Some((above, _)) = parent.rsplit_once('/') {
        if fs::remove_dir(tree.join(above)).is_err() {
            break;
        }
        parent = above;
    }
    Ok(())
}

pub(crate) fn write_file(
    tree: &Path,
    path: &str,
    content: &[u8],
    mode: FileMode,
) -> Result<(), GitError> {
    prepare_parents(tree, path, true)?;
    let full = tree.join(path);
    match fs::symlink_metadata(&full) {
        Ok(metadata) if metadata.is_dir() => {
            return Err(GitError::UnsafeWrite {
                path: path.to_owned(),
                reason: "a directory is in the way".to_owned(),
            });
        }
        // Replaced, never written through: the old entry may be a link or a hard link.
        Ok(_) => fs::remove_file(&full).map_err(|e| GitError::io("replace", &full, e))?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(GitError::io("inspect", &full, error)),
    }
    match mode {
        FileMode::Symlink => std::os::unix::fs::symlink(OsStr::from_bytes(content), &full)
            .map_err(|e| GitError::io("create link", &full, e)),
        FileMode::Regular | FileMode::Executable => {
            // The modes git itself checks files out with, before the umask.
            let permissions = if mode == FileMode::Executable {
                0o777
            } else {
                0o666
            };
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(permissions)
                .open(&full)
                .map_err(|e| GitError::io("create", &full, e))?;
            file.write_all(content)
                .map_err(|e| GitError::io("write", &full, e))
        }
    }
}
