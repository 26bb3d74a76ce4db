//! Finding bubblewrap, checking that it can create a sandbox on this host, and building
//! its command line for one check command.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::SandboxError;

/// Namespaces and the read-only root shared by every sandbox, and by the self-check.
///
/// `--unshare-all` gives a fresh network namespace whose only interface is a private
/// loopback, so nothing on the host (not even 127.0.0.1) is reachable over IP.
/// `--cap-drop ALL` matters when airlock runs as root: bubblewrap then keeps the caller's
/// capabilities, and a command holding CAP_SYS_ADMIN could unmount the tmpfs that hides a
/// path, or remount the root read-write.
/// `--new-session` detaches the command from airlock's terminal (no TIOCSTI injection).
/// `--die-with-parent` ties the sandbox to the bubblewrap process airlock started, so
/// killing that process (its process group) tears down the whole PID namespace.
const BASE_FLAGS: &[&str] = &[
    "--unshare-all",
    "--die-with-parent",
    "--new-session",
    "--cap-drop",
    "ALL",
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
];

/// Directories always replaced by an empty read-only tmpfs.
///
/// A Unix socket stays connectable through a read-only mount, and a network namespace
/// does not cover path-based sockets: without this, a test could talk to the Docker
/// daemon, D-Bus or a local PostgreSQL through `/run` (`/var/run` links there).
pub(crate) const ALWAYS_HIDDEN: &[&str] = &["/run"];

/// Where `bwrap` was looked for when it was not found, for error messages.
#[derive(Debug)]
pub(crate) struct NotFound {
    pub(crate) searched: String,
}

/// The bubblewrap executable named by the configuration, or the first `bwrap` on the
/// PATH of the airlock process.
pub(crate) fn locate(configured: Option<&Path>) -> Result<PathBuf, NotFound> {
    if let Some(path) = configured {
        return if is_executable_file(path) {
            Ok(path.to_path_buf())
        } else {
            Err(NotFound {
                searched: format!("looked at {}", path.display()),
            })
        };
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    for directory in std::env::split_paths(&path_var) {
        let candidate = directory.join("bwrap");
        if is_executable_file(&candidate) {
            return Ok(candidate);
        }
    }
    Err(NotFound {
        searched: format!("searched PATH={}", path_var.to_string_lossy()),
    })
}

fn is_executable_file(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// Versions of the bubblewrap executables that passed the self-check, by path.
///
/// Only successes are remembered: a host fixed while airlock runs (bubblewrap upgraded,
/// user namespaces enabled) is noticed at the next check.
fn working_versions() -> &'static Mutex<HashMap<PathBuf, String>> {
    static WORKING: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    WORKING.get_or_init(Mutex::default)
}

/// Returns the version of the bubblewrap at `bwrap` (for example "0.8.0") after checking,
/// once per process, that it can create a sandbox here by running `/bin/true` in one.
///
/// The self-check exists because a present but unusable bubblewrap (user namespaces
/// disabled, a container's seccomp profile) fails every command with a setup message that
/// would otherwise read like a failing test. The error is a one-line detail.
pub(crate) fn check(bwrap: &Path) -> Result<String, String> {
    if let Some(version) = working_versions()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(bwrap)
    {
        return Ok(version.clone());
    }
    let version_output = Command::new(bwrap)
        .arg("--version")
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("could not run {} --version: {error}", bwrap.display()))?;
    if !version_output.status.success() {
        return Err(format!(
            "{} --version failed: {}",
            bwrap.display(),
            last_line(&version_output.stderr)
        ));
    }
    let version_line = last_line(&version_output.stdout);
    let version = version_line
        .strip_prefix("bubblewrap ")
        .unwrap_or(&version_line)
        .to_string();

    let self_check = Command::new(bwrap)
        .args(BASE_FLAGS)
        .args(["--tmpfs", "/tmp", "--", "/bin/true"])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("could not run {}: {error}", bwrap.display()))?;
    if !self_check.status.success() {
        return Err(format!(
            "{} ({})",
            last_line(&self_check.stderr),
            self_check.status
        ));
    }
    working_versions()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(bwrap.to_path_buf(), version.clone());
    Ok(version)
}

fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// A path to hide, resolved to what it names on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HiddenPath {
    Directory(PathBuf),
    /// Anything that is not a directory: a regular file, a socket, a device.
    Other(PathBuf),
}

impl HiddenPath {
    fn path(&self) -> &Path {
        match self {
            HiddenPath::Directory(path) | HiddenPath::Other(path) => path,
        }
    }
}

/// Resolves `paths` through symlinks (so the target itself is hidden, not only one name for
/// it), skipping those that do not exist and dropping duplicates.
///
/// A path that exists but cannot be resolved is an error rather than skipped: failing
/// closed is the point of hiding it.
pub(crate) fn resolve_hidden(paths: &[PathBuf]) -> Result<Vec<HiddenPath>, SandboxError> {
    let mut resolved: Vec<HiddenPath> = Vec::new();
    for path in paths {
        let canonical = match path.canonicalize() {
            Ok(canonical) => canonical,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(SandboxError::HiddenPathInaccessible {
                    path: path.clone(),
                    source,
                });
            }
        };
        let hidden = if canonical.is_dir() {
            HiddenPath::Directory(canonical)
        } else {
            HiddenPath::Other(canonical)
        };
        if !resolved.contains(&hidden) {
            resolved.push(hidden);
        }
    }
    Ok(resolved)
}

/// One mount placed over the read-only root, before sorting.
#[derive(Debug)]
enum Mount {
    /// A private, writable, empty tmpfs.
    PrivateTmpfs(PathBuf),
    /// An empty tmpfs made read-only once everything inside it is mounted.
    HiddenDirectory(PathBuf),
    /// `/dev/null` bound read-only over the path; reading it fails with EACCES because
    /// bubblewrap mounts it `nodev`.
    HiddenOther(PathBuf),
    Workspace(PathBuf),
}

impl Mount {
    fn target(&self) -> &Path {
        match self {
            Mount::PrivateTmpfs(path)
            | Mount::HiddenDirectory(path)
            | Mount::HiddenOther(path)
            | Mount::Workspace(path) => path,
        }
    }
}

/// The full bubblewrap argument list that runs `/bin/sh -c COMMAND` in `workspace`.
///
/// `workspace` and the hidden paths must be canonical. Mounts are applied from the
/// shallowest path to the deepest, so a workspace inside a hidden directory is bound back
/// on top of the tmpfs, and a hidden path inside the workspace covers its part of the bind.
/// Hidden directories are remounted read-only last: bubblewrap can create mount points in
/// a tmpfs only while it is still writable.
///
/// With `late_env`, the shell first reads those variables from file descriptor 3 (see
/// `crate::prepare`).
///
/// With `share_network`, the command keeps the host's network namespace (integration tests
/// must reach the staging deployment); every other namespace stays private.
pub(crate) fn arguments(
    workspace: &Path,
    hidden: &[HiddenPath],
    command: &str,
    late_env: &[String],
    share_network: bool,
) -> Vec<OsString> {
    let mut mounts = vec![
        Mount::PrivateTmpfs(PathBuf::from("/tmp")),
        Mount::Workspace(workspace.to_path_buf()),
    ];
    for always in ALWAYS_HIDDEN {
        let path = Path::new(always);
        if path.is_dir() && !hidden.iter().any(|hidden| hidden.path() == path) {
            mounts.push(Mount::HiddenDirectory(path.to_path_buf()));
        }
    }
    for path in hidden {
        mounts.push(match path {
            HiddenPath::Directory(path) => Mount::HiddenDirectory(path.clone()),
            HiddenPath::Other(path) => Mount::HiddenOther(path.clone()),
        });
    }
    // Stable: equal depths keep the order above, and paths of equal depth never nest.
    mounts.sort_by_key(|mount| depth(mount.target()));

    let mut arguments: Vec<OsString> = BASE_FLAGS.iter().map(OsString::from).collect();
    if share_network {
        arguments.push("--share-net".into());
    }
    for mount in &mounts {
        match mount {
            Mount::PrivateTmpfs(path) | Mount::HiddenDirectory(path) => {
                arguments.extend([OsString::from("--tmpfs"), path.into()]);
            }
            Mount::HiddenOther(path) => {
                arguments.extend([
                    OsString::from("--ro-bind"),
                    OsString::from("/dev/null"),
                    path.into(),
                ]);
            }
            Mount::Workspace(path) => {
                arguments.extend([OsString::from("--bind"), path.into(), path.into()])
            }
        }
    }
    for mount in &mounts {
        if let Mount::HiddenDirectory(path) = mount {
            arguments.extend([OsString::from("--remount-ro"), path.into()]);
        }
    }
    arguments.extend([OsString::from("--chdir"), workspace.into()]);
    arguments.extend(["--", "/bin/sh", "-c"].map(OsString::from));
    arguments.extend(
        crate::shell_arguments(command, late_env)
            .into_iter()
            .map(OsString::from),
    );
    arguments
}

fn depth(path: &Path) -> usize {
    path.components()
        .filter(|component| matches!(component, Component::Normal(_)))
        .count()
}
