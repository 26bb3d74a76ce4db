//! Runs one check command (a test, lint or format command the user wrote in airlock.toml,
//! never one written by an agent) in a change's workspace, isolated by bubblewrap, with a
//! time limit and an output limit.
//!
//! The command is trusted; the code it runs is not: it is the agent's change. Under
//! bubblewrap the command therefore sees the host's root read-only, has no network (only a
//! private loopback), can write only to the workspace and to a private, empty `/tmp`, and
//! cannot see the hidden paths (airlock's own database and tokens) nor the host's runtime
//! sockets under `/run`.
//!
//! The API is synchronous and blocks until the command has finished; async callers run it
//! on a blocking thread. A command that fails is not an error: `run` returns an `Outcome`
//! for it, and `Err` means the command could not be run at all.

mod bubblewrap;
mod process;
mod tail;

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How strictly check commands are isolated (the `sandbox` key of airlock.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SandboxMode {
    /// bubblewrap must be installed and able to create a sandbox on this host, or `run`
    /// and `probe` fail. The default: a missing sandbox is never silent.
    #[default]
    Required,
    /// bubblewrap when it is installed and works here; otherwise the command runs
    /// unsandboxed and the `Outcome` says why.
    BestEffort,
    /// Never sandboxed. For checks that need the network or the host.
    Off,
}

impl SandboxMode {
    /// The spelling used in airlock.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Required => "required",
            SandboxMode::BestEffort => "best-effort",
            SandboxMode::Off => "off",
        }
    }
}

impl fmt::Display for SandboxMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for SandboxMode {
    type Err = SandboxError;

    fn from_str(value: &str) -> Result<SandboxMode, SandboxError> {
        match value {
            "required" => Ok(SandboxMode::Required),
            "best-effort" => Ok(SandboxMode::BestEffort),
            "off" => Ok(SandboxMode::Off),
            _ => Err(SandboxError::UnknownMode {
                value: value.to_string(),
            }),
        }
    }
}

/// Where and how check commands run.
#[derive(Clone)]
pub struct SandboxConfig {
    pub mode: SandboxMode,
    /// The directory the command runs in, and the only host directory it may write to.
    /// It must exist; it is resolved through symlinks before use.
    pub workspace: PathBuf,
    /// Paths the command must not see, such as airlock's state directory with its database
    /// and tokens. A directory is covered by an empty read-only tmpfs; anything else by
    /// `/dev/null` bound read-only, so reading it fails with "Permission denied". Symlinks
    /// are resolved so the target is hidden; paths that do not exist are skipped. A hidden
    /// directory may contain the workspace, which is then bound back inside it; a hidden
    /// path may not be the workspace itself. Only bubblewrap hides anything: unsandboxed
    /// commands see these paths.
    pub hidden_paths: Vec<PathBuf>,
    /// The complete environment of the command, built (and scrubbed of secrets) by the
    /// caller; nothing of the airlock process's own environment is passed on.
    /// The runner adds exactly one variable: `TMPDIR=/tmp` when `TMPDIR` is absent, so
    /// temporary files land in the private `/tmp`. Beyond that, the command also sees what
    /// the shell and bubblewrap set themselves: `PWD` (both), and whatever the shell the
    /// command starts sets (bash adds `SHLVL` and `_`).
    pub env: Vec<(String, String)>,
    /// The bubblewrap executable; `None` looks up `bwrap` on the PATH of the airlock
    /// process (not on the PATH given in `env`).
    pub bwrap_path: Option<PathBuf>,
    /// Keep the host's network (integration tests against staging); checks never do.
    pub share_network: bool,
}

impl fmt::Debug for SandboxConfig {
    /// Lists environment variable names only: values may be credentials the caller chose
    /// to pass to the command, and configurations end up in logs.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        formatter
            .debug_struct("SandboxConfig")
            .field("mode", &self.mode)
            .field("workspace", &self.workspace)
            .field("hidden_paths", &self.hidden_paths)
            .field("env_names", &env_names)
            .field("bwrap_path", &self.bwrap_path)
            .field("share_network", &self.share_network)
            .finish()
    }
}

/// One check command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// The check's name in airlock.toml, for the caller's reports; the runner ignores it.
    pub name: String,
    /// Run as `/bin/sh -c COMMAND` in the workspace.
    pub command: String,
    /// Wall-clock limit, counted from the start of the command. When it passes, every
    /// process the command started is killed.
    pub timeout: Duration,
    /// How many bytes of output to keep: the last ones, where failures are reported.
    pub output_limit: usize,
}

/// What a command did. Produced for every command that started, whatever it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code, if the command exited rather than being killed by a signal. Under
    /// bubblewrap a command killed by signal N is reported by bubblewrap as exit code
    /// 128 + N, as shells do.
    pub exit_code: Option<i32>,
    /// The signal that killed the command (unsandboxed), or bubblewrap itself (SIGKILL
    /// after a timeout or a cancel).
    pub signal: Option<i32>,
    /// The timeout passed and the command was killed.
    pub timed_out: bool,
    /// `Cancel::cancel` was called and the command was killed.
    pub cancelled: bool,
    pub duration: Duration,
    /// The last `output_limit` bytes of stdout and stderr, interleaved in the order they
    /// were written (both are one pipe).
    pub output: Vec<u8>,
    /// How many bytes the command wrote in all, kept or not.
    pub output_total_bytes: u64,
    pub isolation: Isolation,
}

impl Outcome {
    /// Exited with code 0, within its time, and was not cancelled.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.cancelled
    }
}

/// The isolation a command ran under (or would run under, from `probe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// Under bubblewrap: no network (a private loopback only), the host's root read-only,
    /// writable only the workspace and a private empty `/tmp`, `/run` and the hidden paths
    /// invisible.
    Bubblewrap {
        bwrap: PathBuf,
        /// As reported by `bwrap --version`, for example "0.8.0".
        version: String,
        /// How many of the configured hidden paths existed and were hidden.
        hidden_paths: usize,
    },
    /// Run directly on the host, with the given environment and the workspace as working
    /// directory, and nothing more.
    Unsandboxed { reason: String },
}

impl Isolation {
    pub fn is_sandboxed(&self) -> bool {
        matches!(self, Isolation::Bubblewrap { .. })
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Isolation::Bubblewrap {
                version,
                hidden_paths,
                ..
            } => {
                write!(
                    formatter,
                    "bubblewrap {version}: no network, read-only root, writable: workspace, private /tmp; /run"
                )?;
                match hidden_paths {
                    0 => formatter.write_str(" hidden"),
                    1 => formatter.write_str(" and 1 path hidden"),
                    count => write!(formatter, " and {count} paths hidden"),
                }
            }
            Isolation::Unsandboxed { reason } => write!(formatter, "none: {reason}"),
        }
    }
}

/// Asks a running command to stop, from another thread (airlock shutting down). Clones
/// share one flag. The command and every process it started are killed within about
/// 20 ms; `run` then returns an `Outcome` with `cancelled` set.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Irreversible: a command started with an already cancelled `Cancel` is killed at once.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Why a command could not be run. A command that ran and failed is an `Outcome`.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "unknown sandbox mode {value:?}; accepted values: \"required\", \"best-effort\", \"off\""
    )]
    UnknownMode { value: String },
    #[error(
        "sandbox = \"required\" but bubblewrap (bwrap) was not found ({searched}); install the Debian package `bubblewrap` (apt-get install bubblewrap) or set sandbox = \"best-effort\" in airlock.toml"
    )]
    BwrapMissing { searched: String },
    #[error(
        "sandbox = \"required\" but bubblewrap at {} cannot create a sandbox on this host: {detail}; allow unprivileged user namespaces (or run airlock where they are allowed) or set sandbox = \"best-effort\" in airlock.toml",
        bwrap.display()
    )]
    BwrapUnusable { bwrap: PathBuf, detail: String },
    #[error("workspace {} does not exist", path.display())]
    WorkspaceMissing { path: PathBuf },
    #[error("workspace {} is not a directory", path.display())]
    WorkspaceNotDirectory { path: PathBuf },
    #[error("cannot access workspace {}", path.display())]
    WorkspaceInaccessible {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("hidden path {} is the workspace itself; hide its parent directory instead", path.display())]
    WorkspaceHidden { path: PathBuf },
    #[error("cannot resolve hidden path {}; refusing to run with it visible", path.display())]
    HiddenPathInaccessible {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not create the output pipe")]
    Pipe {
        #[source]
        source: io::Error,
    },
    #[error("could not start {}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("late variable `{name}`: {detail}")]
    LateVariable { name: String, detail: String },
    #[error("could not wait for the command")]
    Wait {
        #[source]
        source: io::Error,
    },
}

/// Starts the thread that spawns every command, if it is not running yet.
///
/// Call it from a thread running at the priority commands should have (a service's
/// start-up): a thread inherits the scheduling priority of the thread that creates it,
/// and commands inherit the spawner's. Created lazily by whichever thread spawns first,
/// it could be a lowered-priority background thread (the server's standby workspace
/// prepares a check from one), and every command would then run at that priority.
pub fn start_spawner() {
    process::spawner::start();
}

/// Runs `spec` in `config.workspace` under the isolation `probe` describes, and blocks until
/// it exits, times out or is cancelled. Every process the command started is killed
/// before this returns, including background jobs it left running after a clean exit.
///
/// Limitation when unsandboxed: a process that leaves the command's process group (it
/// calls `setsid`) survives the kill; its output is no longer read once the command has
/// finished. Under bubblewrap it dies with the sandbox's PID namespace.
///
/// A failure inside bubblewrap's own setup for this particular run (for example a hidden
/// path it cannot mount over) is reported like a failing command: exit code 1 and a
/// `bwrap: ...` line in the output.
pub fn run(
    config: &SandboxConfig,
    spec: &CommandSpec,
    cancel: &Cancel,
) -> Result<Outcome, SandboxError> {
    let (command, isolation, _) = build(config, &spec.command, &[])?;
    let finished = process::run_to_completion(command, spec.timeout, spec.output_limit, cancel)?;
    Ok(outcome(finished, isolation))
}

/// Builds the sandbox for `spec` now and leaves the command waiting, so that a later
/// [`Prepared::run`] pays only for the command itself.
///
/// Creating a bubblewrap sandbox (namespaces, mounts) takes several milliseconds, more than
/// the rest of a short check; a worker waiting for work can spend them in advance. The
/// shell in the sandbox blocks until `run` hands it the values of `late_env`, variables
/// not known yet (which change it is for); everything else, workspace included, is fixed
/// now, and the workspace's content may still change before `run`: it is bound, not
/// copied. Dropping a `Prepared` that never ran kills its sandbox.
///
/// Unsandboxed, the shell is started now all the same (the process start is then what
/// is saved), waiting in the workspace.
pub fn prepare(
    config: &SandboxConfig,
    spec: &CommandSpec,
    late_env: &[&str],
) -> Result<Prepared, SandboxError> {
    let late_env: Vec<String> = late_env.iter().map(|name| name.to_string()).collect();
    for name in &late_env {
        let valid = name
            .chars()
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || config.env.iter().any(|(fixed, _)| fixed == name) {
            return Err(SandboxError::LateVariable {
                name: name.clone(),
                detail: "a late variable must be a shell name (letters, digits, `_`) not already in the environment".into(),
            });
        }
    }
    let (command, isolation, workspace) = build(config, &spec.command, &late_env)?;
    let (values_reader, values) = io::pipe().map_err(|source| SandboxError::Pipe { source })?;
    let spawned = process::spawn(command, Some(values_reader.into()))?;
    Ok(Prepared {
        spec: spec.clone(),
        isolation,
        workspace,
        late_env,
        waiting: Some(Waiting { spawned, values }),
    })
}

/// A command whose sandbox is built and waiting (see [`prepare`]).
#[derive(Debug)]
pub struct Prepared {
    spec: CommandSpec,
    isolation: Isolation,
    workspace: PathBuf,
    late_env: Vec<String>,
    /// `None` once run.
    waiting: Option<Waiting>,
}

/// The started command: its shell (in the sandbox, when there is one) blocks on reading
/// the late variables' values from `values`.
#[derive(Debug)]
struct Waiting {
    spawned: process::Spawned,
    values: io::PipeWriter,
}

impl Prepared {
    /// The command it will run.
    pub fn spec(&self) -> &CommandSpec {
        &self.spec
    }

    /// The workspace it is bound to (canonical).
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// Starts the command with the values of the late variables (each named exactly once,
    /// with no newline or NUL in a value) and blocks until it exits, times out (counted
    /// from now) or is cancelled, as [`run`] does.
    pub fn run(
        mut self,
        late_values: &[(&str, &str)],
        cancel: &Cancel,
    ) -> Result<Outcome, SandboxError> {
        let mut ordered = Vec::with_capacity(self.late_env.len());
        for name in &self.late_env {
            let mut given = late_values.iter().filter(|(given, _)| given == name);
            let value = match (given.next(), given.next()) {
                (Some((_, value)), None) => *value,
                _ => {
                    return Err(SandboxError::LateVariable {
                        name: name.clone(),
                        detail: "it must be given exactly once".into(),
                    });
                }
            };
            if value.contains(['\n', '\0']) {
                return Err(SandboxError::LateVariable {
                    name: name.clone(),
                    detail: "a value may not contain a newline or NUL".into(),
                });
            }
            ordered.push((name.as_str(), value));
        }
        if let Some((name, _)) = late_values
            .iter()
            .find(|(name, _)| !self.late_env.iter().any(|late| late == name))
        {
            return Err(SandboxError::LateVariable {
                name: name.to_string(),
                detail: "it was not declared when the command was prepared".into(),
            });
        }
        let Waiting {
            spawned,
            mut values,
        } = self.waiting.take().expect("a Prepared runs once");
        let mut lines = Vec::new();
        for (_, value) in &ordered {
            lines.extend_from_slice(value.as_bytes());
            lines.push(b'\n');
        }
        // If the command died while it waited, the write fails; its exit status and its
        // message (bubblewrap's, say) are then the outcome, as with `run`.
        let _ = values.write_all(&lines);
        drop(values);
        let finished =
            process::supervise(spawned, self.spec.timeout, self.spec.output_limit, cancel)?;
        Ok(outcome(finished, self.isolation.clone()))
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(Waiting { spawned, .. }) = self.waiting.take() {
            spawned.kill();
        }
    }
}

/// The command that runs `command` (a shell command line) under `config`, the isolation
/// it gets and the canonical workspace. The shell first reads `late_env` from file
/// descriptor 3 (see [`shell_arguments`]).
fn build(
    config: &SandboxConfig,
    command: &str,
    late_env: &[String],
) -> Result<(Command, Isolation, PathBuf), SandboxError> {
    let workspace = resolve_workspace(&config.workspace)?;
    let (isolation, hidden) = choose_isolation(config)?;
    let mut built = match &isolation {
        Isolation::Bubblewrap { bwrap, .. } => {
            if hidden.contains(&bubblewrap::HiddenPath::Directory(workspace.clone())) {
                return Err(SandboxError::WorkspaceHidden { path: workspace });
            }
            let mut built = Command::new(bwrap);
            built.args(bubblewrap::arguments(
                &workspace,
                &hidden,
                command,
                late_env,
                config.share_network,
            ));
            built
        }
        Isolation::Unsandboxed { .. } => {
            let mut built = Command::new("/bin/sh");
            built
                .arg("-c")
                .args(shell_arguments(command, late_env))
                .current_dir(&workspace);
            built
        }
    };
    // The environment goes to bubblewrap's own process rather than through --setenv, which
    // would put every value on a command line readable by any user of the host.
    built.env_clear().envs(command_environment(&config.env));
    Ok((built, isolation, workspace))
}

/// What follows `/bin/sh -c` to run `command`: the command itself or, with late
/// variables, a fixed script that reads one line per variable from file descriptor 3,
/// exports them, closes the descriptor and runs `command` (passed as `$0`, never pasted
/// into the script).
pub(crate) fn shell_arguments(command: &str, late_env: &[String]) -> Vec<String> {
    if late_env.is_empty() {
        return vec![command.to_string()];
    }
    let mut script = String::new();
    for name in late_env {
        script.push_str(&format!(
            "IFS= read -r {name} <&3 || {{ echo 'airlock: the prepared command was never started' >&2; exit 125; }}; "
        ));
    }
    script.push_str(&format!(
        "export {}; exec 3<&-; exec /bin/sh -c \"$0\"",
        late_env.join(" ")
    ));
    vec![script, command.to_string()]
}

fn outcome(finished: process::Finished, isolation: Isolation) -> Outcome {
    Outcome {
        exit_code: finished.exit_code,
        signal: finished.signal,
        timed_out: finished.timed_out,
        cancelled: finished.cancelled,
        duration: finished.duration,
        output: finished.output,
        output_total_bytes: finished.output_total_bytes,
        isolation,
    }
}

/// The isolation `run` would use with `config`, without running a command (for
/// `airlock doctor` and status pages). Checking bubblewrap runs it once per process
/// (`bwrap --version` and `/bin/true` in a sandbox); the result is remembered when it works.
/// Fails exactly when `run` would fail for the same reason (bubblewrap missing or unusable
/// under `Required`, a hidden path that cannot be resolved); the workspace is not checked.
pub fn probe(config: &SandboxConfig) -> Result<Isolation, SandboxError> {
    choose_isolation(config).map(|(isolation, _)| isolation)
}

/// The isolation for `config`, with the resolved hidden paths when it is bubblewrap.
fn choose_isolation(
    config: &SandboxConfig,
) -> Result<(Isolation, Vec<bubblewrap::HiddenPath>), SandboxError> {
    let unsandboxed = |reason: String| Ok((Isolation::Unsandboxed { reason }, Vec::new()));
    let mode = config.mode;
    if mode == SandboxMode::Off {
        return unsandboxed("sandbox = \"off\"".to_string());
    }
    let bwrap = match bubblewrap::locate(config.bwrap_path.as_deref()) {
        Ok(bwrap) => bwrap,
        Err(not_found) if mode == SandboxMode::Required => {
            return Err(SandboxError::BwrapMissing {
                searched: not_found.searched,
            });
        }
        Err(not_found) => {
            return unsandboxed(format!(
                "sandbox = \"best-effort\" and bubblewrap (bwrap) was not found ({}); install the Debian package `bubblewrap` to isolate checks",
                not_found.searched
            ));
        }
    };
    let version = match bubblewrap::check(&bwrap) {
        Ok(version) => version,
        Err(detail) if mode == SandboxMode::Required => {
            return Err(SandboxError::BwrapUnusable { bwrap, detail });
        }
        Err(detail) => {
            return unsandboxed(format!(
                "sandbox = \"best-effort\" and bubblewrap at {} cannot create a sandbox on this host: {detail}",
                bwrap.display()
            ));
        }
    };
    let hidden = bubblewrap::resolve_hidden(&config.hidden_paths)?;
    Ok((
        Isolation::Bubblewrap {
            bwrap,
            version,
            hidden_paths: hidden.len(),
        },
        hidden,
    ))
}

fn resolve_workspace(path: &Path) -> Result<PathBuf, SandboxError> {
    let canonical = path.canonicalize().map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            SandboxError::WorkspaceMissing {
                path: path.to_path_buf(),
            }
        } else {
            SandboxError::WorkspaceInaccessible {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    if !canonical.is_dir() {
        return Err(SandboxError::WorkspaceNotDirectory {
            path: path.to_path_buf(),
        });
    }
    Ok(canonical)
}

/// `env` plus `TMPDIR=/tmp` when it is absent (see `SandboxConfig::env`).
fn command_environment(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut environment = env.to_vec();
    if !environment.iter().any(|(name, _)| name == "TMPDIR") {
        environment.push(("TMPDIR".to_string(), "/tmp".to_string()));
    }
    environment
}
