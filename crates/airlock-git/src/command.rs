//! Running the `git` binary: an explicit argument vector, a controlled environment, and
//! configuration overrides so that neither the caller's environment nor a repository's own
//! configuration can make airlock run a program it did not choose.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use crate::GitError;

/// Overrides passed as `-c` to every invocation. A repository's `.git/config` is written by
/// whoever controls the repository (and a workspace's tree by the change being checked), so
/// anything that can name a program or reach the network is pinned here.
const CONFIG_OVERRIDES: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.quotePath=true",
    // Attribute and exclude files outside the repository would make results depend on the
    // machine; the ones inside the tree still apply.
    "core.attributesFile=/dev/null",
    "core.excludesFile=/dev/null",
    // No transport at all: a partial clone must not fetch missing objects, a submodule
    // must not be cloned.
    "protocol.allow=never",
    "submodule.recurse=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "color.ui=false",
    "advice.detachedHead=false",
];

/// The longest excerpt of git's standard error kept in an error.
const STDERR_EXCERPT_BYTES: usize = 2000;
/// The longest rendering of an argument list kept in an error.
const ARGS_EXCERPT_CHARS: usize = 400;

/// One git invocation being built.
pub(crate) struct Git {
    command: Command,
    /// The arguments after the global options, kept for error messages.
    shown_args: Vec<OsString>,
}

impl Git {
    /// An invocation running in `cwd`, with no repository chosen yet (git discovers it).
    pub(crate) fn new(cwd: &Path) -> Git {
        let mut command = Command::new("git");
        command.current_dir(cwd);
        // The caller's GIT_* variables (GIT_DIR, GIT_INDEX_FILE, GIT_EXTERNAL_DIFF,
        // GIT_SSH_COMMAND, GIT_CONFIG_PARAMETERS, ...) would redirect or extend what git does.
        for (name, _) in std::env::vars_os() {
            if name.as_encoded_bytes().starts_with(b"GIT_") {
                command.env_remove(&name);
            }
        }
        command
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ATTR_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_NO_LAZY_FETCH", "1")
            .env("GIT_ADVICE", "0")
            .env("LC_ALL", "C")
            .arg("--no-pager")
            // Replacement refs would let a repository substitute one commit for another.
            .arg("--no-replace-objects")
            // Paths come from agent input: `*` or `:(glob)` must not widen what is read.
            .arg("--literal-pathspecs");
        for config in CONFIG_OVERRIDES {
            command.arg("-c").arg(config);
        }
        command.stdin(Stdio::null());
        Git {
            command,
            shown_args: Vec::new(),
        }
    }

    /// An invocation finding the user's repository from `cwd`, for opening it. Optional
    /// locks are off so that nothing is written to the repository.
    pub(crate) fn discover(cwd: &Path) -> Git {
        let mut git = Git::new(cwd);
        git.command.env("GIT_OPTIONAL_LOCKS", "0");
        git
    }

    /// An invocation reading the user's repository through its git directory, never its
    /// work tree. Optional locks are off so that nothing (not even a refreshed index) is
    /// written to the user's repository.
    pub(crate) fn for_repository(git_dir: &Path) -> Git {
        let mut git = Git::new(git_dir);
        git.command
            .env("GIT_OPTIONAL_LOCKS", "0")
            .arg(prefixed("--git-dir=", git_dir.as_os_str()));
        git
    }

    /// An invocation on a workspace: its private git directory and its tree, named
    /// explicitly so nothing in the tree is taken for a repository. Runs in the
    /// workspace's private directory, since the tree may have been made unreadable.
    pub(crate) fn for_workspace(cwd: &Path, git_dir: &Path, tree: &Path) -> Git {
        let mut git = Git::new(cwd);
        git.command
            .arg(prefixed("--git-dir=", git_dir.as_os_str()))
            .arg(prefixed("--work-tree=", tree.as_os_str()));
        git
    }

    /// Sets one environment variable of the git process (never from agent input).
    pub(crate) fn env(mut self, name: &str, value: impl AsRef<OsStr>) -> Git {
        self.command.env(name, value);
        self
    }

    /// Lets this invocation reach `remote` over the transports an operator may configure
    /// for a deployment target (local paths, ssh, https); every other transport stays off.
    pub(crate) fn allow_transport(mut self) -> Git {
        for protocol in ["file", "ssh", "https", "http", "git"] {
            self.command
                .arg("-c")
                .arg(format!("protocol.{protocol}.allow=always"));
        }
        self
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Git {
        self.shown_args.push(arg.as_ref().to_os_string());
        self.command.arg(arg);
        self
    }

    pub(crate) fn args<I>(mut self, args: I) -> Git
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        for arg in args {
            self = self.arg(arg);
        }
        self
    }

    /// The arguments, shortened, for error messages.
    pub(crate) fn describe(&self) -> String {
        describe_args(&self.shown_args)
    }

    /// Runs git and returns its standard output; any non-zero exit is an error.
    pub(crate) fn run(self) -> Result<Vec<u8>, GitError> {
        let finished = self.run_with_status()?;
        finished.require_success()
    }

    /// Starts git with piped standard input and output, for a conversation; standard
    /// error is discarded so that it can never fill up and stall git.
    pub(crate) fn spawn_interactive(mut self) -> Result<(std::process::Child, String), GitError> {
        let args = describe_args(&self.shown_args);
        self.command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let child = self.command.spawn().map_err(|source| GitError::Spawn {
            args: args.clone(),
            source,
        })?;
        Ok((child, args))
    }

    /// Runs git with `input` on its standard input and returns how it ended.
    pub(crate) fn run_with_input(mut self, input: &[u8]) -> Result<Finished, GitError> {
        use std::io::Write;
        let args = describe_args(&self.shown_args);
        self.command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_error = |source| GitError::Spawn {
            args: args.clone(),
            source,
        };
        let mut child = self.command.spawn().map_err(spawn_error)?;
        // Written from a thread of its own: git may fill its output pipe before it has
        // read all of its input.
        let mut stdin = child.stdin.take();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            if let Some(stdin) = stdin.as_mut() {
                let _ = stdin.write_all(&input);
            }
        });
        let output = child.wait_with_output().map_err(spawn_error)?;
        let _ = writer.join();
        Ok(Finished {
            args,
            status: output.status,
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }

    /// Runs git and returns how it ended; the caller decides which exit codes mean what.
    pub(crate) fn run_with_status(mut self) -> Result<Finished, GitError> {
        let args = describe_args(&self.shown_args);
        self.command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let output = self.command.output().map_err(|source| GitError::Spawn {
            args: args.clone(),
            source,
        })?;
        Ok(Finished {
            args,
            status: output.status,
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}

/// A git process that has exited.
pub(crate) struct Finished {
    pub(crate) args: String,
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

impl Finished {
    pub(crate) fn require_success(self) -> Result<Vec<u8>, GitError> {
        if self.status.success() {
            Ok(self.stdout)
        } else {
            Err(self.into_error())
        }
    }

    pub(crate) fn into_error(self) -> GitError {
        GitError::Command {
            args: self.args,
            status: describe_status(self.status),
            stderr: stderr_excerpt(&self.stderr),
        }
    }
}

fn prefixed(prefix: &str, value: &OsStr) -> OsString {
    let mut joined = OsString::from(prefix);
    joined.push(value);
    joined
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "unknown exit status".to_owned(),
    }
}

/// The arguments as one line, each quoted when it is not plain, cut to a bounded length.
pub(crate) fn describe_args(args: &[OsString]) -> String {
    let mut line = String::new();
    for arg in args {
        if !line.is_empty() {
            line.push(' ');
        }
        let text = arg.to_string_lossy();
        let plain = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=./:^{}@+,".contains(c));
        if plain {
            line.push_str(&text);
        } else {
            line.push_str(&format!("{text:?}"));
        }
        if line.chars().count() > ARGS_EXCERPT_CHARS {
            break;
        }
    }
    truncate_chars(&line, ARGS_EXCERPT_CHARS)
}

/// git's message, trimmed and cut to a bounded length.
pub(crate) fn stderr_excerpt(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return "no message".to_owned();
    }
    if text.len() <= STDERR_EXCERPT_BYTES {
        return text.to_owned();
    }
    let mut end = STDERR_EXCERPT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

fn truncate_chars(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(limit).collect();
    cut.push('…');
    cut
}
