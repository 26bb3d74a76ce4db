//! Child processes in their own process group: spawning them so they die with airlock,
//! stopping the whole group, and running a command to completion under a deadline with
//! the tails of its output kept.

use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::RolloutError;

/// How often a waiting loop looks at the child again.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How much of each output stream a completed command keeps (its end).
pub(crate) const OUTPUT_TAIL_BYTES: usize = 8 * 1024;

/// How long the output readers may go on after the command's group was killed: only a
/// process that escaped the group (`setsid`) still holds the pipes then.
const READER_GRACE: Duration = Duration::from_millis(200);

/// The PATH commands get when airlock itself has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Gives `command` an exact environment: airlock's `PATH`, then `extra` (which may replace it), nothing else. The
/// server's own environment (API tokens, database URLs) is never passed on.
pub(crate) fn exact_environment(command: &mut Command, extra: &[(String, String)]) {
    command.env_clear().env(
        "PATH",
        std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
    );
    for (name, value) in extra {
        command.env(name, value);
    }
}

/// Checks configured environment variable names: letters, digits and `_`, not starting
/// with a digit, and none of the names airlock sets itself.
pub(crate) fn validate_env(env: &[(String, String)]) -> Result<(), RolloutError> {
    for (name, value) in env {
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !value.contains('\0');
        if !valid || name == "PORT" || name.starts_with("AIRLOCK_") {
            return Err(RolloutError::InvalidOption {
                what: "environment variable",
                value: name.clone(),
                accepted: "a name of letters, digits and `_`, not starting with a digit, and a value without NUL; PORT and AIRLOCK_* are set by airlock",
            });
        }
    }
    Ok(())
}

/// Makes `command` start in a process group of its own, with stdin from /dev/null, and
/// die by SIGKILL when the thread that spawns it ends (PR_SET_PDEATHSIG): if airlock dies,
/// its services and scripts do not run on unsupervised.
pub(crate) fn isolate(command: &mut Command) {
    command.stdin(Stdio::null()).process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A spawned child that leads its own process group. The group is signalled only while
/// the leader is unreaped: its process group ID stays reserved until then, so a signal can
/// never reach an unrelated group that reused the number.
#[derive(Debug)]
pub(crate) struct Group {
    child: Child,
    status: Option<ExitStatus>,
}

impl Group {
    /// Takes charge of a child spawned after [`isolate`].
    pub(crate) fn new(child: Child) -> Group {
        Group {
            child,
            status: None,
        }
    }

    /// The leader's process ID (also the group's ID).
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    fn pgid(&self) -> Option<libc::pid_t> {
        libc::pid_t::try_from(self.child.id()).ok()
    }

    /// Whether the leader has exited, without reaping it.
    pub(crate) fn leader_exited(&self) -> bool {
        if self.status.is_some() {
            return true;
        }
        let Some(pid) = self.pgid() else {
            return true;
        };
        loop {
            // SAFETY: siginfo_t is plain data for which all-zero bytes are a valid value.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `info` is a valid, writable siginfo_t for the duration of the call.
            let result = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
                )
            };
            if result == 0 {
                // SAFETY: waitid filled `info` (or left it zeroed when nothing exited).
                return unsafe { info.si_pid() } != 0;
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                // ECHILD: nothing left to wait for.
                return true;
            }
        }
    }

    /// Sends `signal` to every process of the group, if the leader is unreaped.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        if self.status.is_some() {
            return;
        }
        if let Some(pgid) = self.pgid() {
            // SAFETY: kill(2) has no memory-safety preconditions. ESRCH (the group is
            // already empty) is expected and ignored.
            unsafe {
                libc::kill(-pgid, signal);
            }
        }
    }

    /// Kills whatever is left in the group, then reaps the leader and returns its status.
    /// Only call once the leader has exited, or to kill it.
    pub(crate) fn kill_and_reap(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        self.signal(libc::SIGKILL);
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }

    /// SIGTERM to the group, up to `grace` for the leader to exit, then SIGKILL to
    /// whatever is left (the leader and anything it started) and reap.
    pub(crate) fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while !self.leader_exited() && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
        self.kill_and_reap()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = self.kill_and_reap();
    }
}

/// Describes how a process ended: "exited with status 3", "was killed by signal 9".
pub(crate) fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended".to_owned(),
    }
}

/// What a command run to completion did.
#[derive(Debug)]
pub(crate) struct Completed {
    pub(crate) status: Option<ExitStatus>,
    pub(crate) timed_out: bool,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

impl Completed {
    /// Whether the command exited with status 0 in time.
    pub(crate) fn succeeded(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|status| status.success())
    }

    /// "exited with status 1", "did not finish within 30s (killed)".
    pub(crate) fn outcome(&self, timeout: Duration) -> String {
        if self.timed_out {
            return format!("did not finish within {timeout:?} and was killed");
        }
        match self.status {
            Some(status) => describe_status(status),
            None => "ended".to_owned(),
        }
    }

    /// The end of both output streams, stderr last, as text.
    pub(crate) fn output_tail(&self) -> String {
        let mut text = lossy_tail(&self.stdout, OUTPUT_TAIL_BYTES);
        let stderr = lossy_tail(&self.stderr, OUTPUT_TAIL_BYTES);
        if !text.is_empty() && !stderr.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&stderr);
        text
    }
}

/// Runs `command` (program, arguments, environment and directory already set) in its own
/// process group with stdout and stderr on pipes, under `timeout`: at the deadline the
/// whole group is killed. Leftovers in the group are killed when the leader exits.
pub(crate) fn run_to_completion(
    mut command: Command,
    timeout: Duration,
    what: &'static str,
) -> Result<Completed, RolloutError> {
    isolate(&mut command);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command.spawn().map_err(|source| RolloutError::Spawn {
        what,
        program,
        source,
    })?;
    drop(command);
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let readers = [
        child.stdout.take().map(|pipe| spawn_reader(pipe, &stdout)),
        child.stderr.take().map(|pipe| spawn_reader(pipe, &stderr)),
    ];
    let mut group = Group::new(child);
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    while !group.leader_exited() {
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
        thread::sleep(POLL_INTERVAL);
    }
    let status = group
        .kill_and_reap()
        .map_err(|source| RolloutError::Wait { what, source })?;
    // The group is dead, so the pipes close; only an escaped process could keep a reader
    // waiting, and then it is left to finish on its own.
    let reader_deadline = Instant::now() + READER_GRACE;
    for reader in readers.into_iter().flatten() {
        while !reader.is_finished() && Instant::now() < reader_deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
    let take = |buffer: &Arc<Mutex<Vec<u8>>>| {
        std::mem::take(&mut *buffer.lock().unwrap_or_else(PoisonError::into_inner))
    };
    Ok(Completed {
        status: Some(status),
        timed_out,
        stdout: take(&stdout),
        stderr: take(&stderr),
    })
}

/// Reads `pipe` to its end into `buffer`, keeping at most the last 64 KiB.
fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    buffer: &Arc<Mutex<Vec<u8>>>,
) -> thread::JoinHandle<()> {
    const LIMIT: usize = 64 * 1024;
    let buffer = Arc::clone(buffer);
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => return,
                Ok(count) => {
                    let mut buffer = buffer.lock().unwrap_or_else(PoisonError::into_inner);
                    buffer.extend_from_slice(&chunk[..count]);
                    if buffer.len() > LIMIT {
                        let excess = buffer.len() - LIMIT;
                        buffer.drain(..excess);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    })
}

/// The last `limit` bytes of `bytes` as text, starting at a line boundary when one is near,
/// with a marker when something was cut.
pub(crate) fn lossy_tail(bytes: &[u8], limit: usize) -> String {
    if bytes.len() <= limit {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut start = bytes.len() - limit;
    if let Some(newline) = bytes[start..].iter().position(|&byte| byte == b'\n')
        && newline < limit / 4
    {
        start += newline + 1;
    }
    format!("[…]\n{}", String::from_utf8_lossy(&bytes[start..]))
}

/// The last `limit` bytes of a file from byte `from` on, as text (empty if it cannot be
/// read).
pub(crate) fn file_tail(path: &std::path::Path, from: u64, limit: usize) -> String {
    use std::io::{Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let length = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    // Read a little more than the limit so the cut can fall on a line boundary.
    let wanted = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let start = length.saturating_sub(wanted).max(from);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.take(wanted).read_to_end(&mut bytes);
    lossy_tail(&bytes, limit)
}
