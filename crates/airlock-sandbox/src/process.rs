//! Running one prepared command: its own process group, one output pipe read into a tail
//! buffer, a deadline, cancellation, and killing every process it left behind.

use std::io::{self, PipeReader, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::tail::TailBuffer;
use crate::{Cancel, SandboxError};

/// How often a running command checks for cancellation. The deadline and the command's
/// exit are noticed at once; only a cancel waits for the next tick.
const CANCEL_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// How often the output reader checks whether the command has finished while the pipe is
/// quiet. It matters only when a process that escaped the process group (it called
/// `setsid`) still holds the pipe after the command was reaped.
const READER_IDLE_CHECK_MS: libc::c_int = 20;

/// How long the reader keeps draining after the command finished, if something that
/// escaped the process group keeps writing.
const DRAIN_LIMIT: Duration = Duration::from_millis(100);

/// What happened to one command, before it becomes an `Outcome`.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) exit_code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) timed_out: bool,
    pub(crate) cancelled: bool,
    pub(crate) duration: Duration,
    pub(crate) output: Vec<u8>,
    pub(crate) output_total_bytes: u64,
}

/// A command spawned in its own process group, with stdin from /dev/null and stdout and
/// stderr on one pipe, not yet supervised.
#[derive(Debug)]
pub(crate) struct Spawned {
    child: Child,
    output: PipeReader,
}

impl Spawned {
    /// Kills the command's process group and reaps it: a prepared command never started.
    pub(crate) fn kill(mut self) {
        ProcessGroup::new(&self.child).kill_while_leader_unreaped();
        let _ = self.child.wait();
    }
}

/// Spawns `command` (program, arguments, environment and directory already set) in its own
/// process group with stdin from /dev/null and stdout and stderr on one pipe. With
/// `fd3`, that descriptor is the command's file descriptor 3.
pub(crate) fn spawn(mut command: Command, fd3: Option<OwnedFd>) -> Result<Spawned, SandboxError> {
    let (output, stdout_writer) = io::pipe().map_err(|source| SandboxError::Pipe { source })?;
    let stderr_writer = stdout_writer
        .try_clone()
        .map_err(|source| SandboxError::Pipe { source })?;
    command
        .stdin(Stdio::null())
        .stdout(stdout_writer)
        .stderr(stderr_writer)
        .process_group(0);
    let fd3_raw = fd3.as_ref().map(|fd| fd.as_raw_fd());
    // If airlock itself dies (SIGKILL, a crash), the command dies with it rather than run
    // on unsupervised: after a restart the step runs again from its last recorded state.
    // The signal fires when the spawning thread exits, so every command is spawned by one
    // thread that lives as long as the process (a prepared command may wait for minutes
    // and be started from another thread).
    // SAFETY: prctl, dup2 and fcntl are async-signal-safe and touch no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            if let Some(fd) = fd3_raw {
                // dup2 clears close-on-exec on the copy; a descriptor that already is 3
                // must have it cleared by hand.
                let result = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                };
                if result == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let program: PathBuf = command.get_program().into();
    let spawned = spawner::spawn(command);
    // Airlock's copies of the pipe's write end (in the Command, dropped by the spawner)
    // and of fd 3 must be closed, or the reader never sees EOF and the command never
    // sees its input end.
    drop(fd3);
    let child = spawned.map_err(|source| SandboxError::Spawn { program, source })?;
    Ok(Spawned { child, output })
}

/// Spawns `command` as [`spawn`] does, then waits for it under `timeout` and `cancel`.
pub(crate) fn run_to_completion(
    command: Command,
    timeout: Duration,
    output_limit: usize,
    cancel: &Cancel,
) -> Result<Finished, SandboxError> {
    let spawned = spawn(command, None)?;
    supervise(spawned, timeout, output_limit, cancel)
}

/// Waits for a spawned command under `timeout` (counted from now) and `cancel`, reading
/// its output, then kills whatever it left running.
pub(crate) fn supervise(
    spawned: Spawned,
    timeout: Duration,
    output_limit: usize,
    cancel: &Cancel,
) -> Result<Finished, SandboxError> {
    let Spawned {
        child,
        output: reader,
    } = spawned;
    let start = Instant::now();
    let tail = Arc::new(Mutex::new(TailBuffer::new(output_limit)));
    let command_finished = Arc::new(AtomicBool::new(false));
    let reader_thread = {
        let tail = Arc::clone(&tail);
        let command_finished = Arc::clone(&command_finished);
        thread::spawn(move || read_output(reader, &tail, &command_finished))
    };

    let group = Arc::new(ProcessGroup::new(&child));
    let (exit_sender, exit_receiver) = mpsc::channel();
    let waiter_thread = {
        let group = Arc::clone(&group);
        thread::spawn(move || {
            let _ = exit_sender.send(group.wait_then_kill_leftovers(child));
        })
    };

    let deadline = start.checked_add(timeout);
    let mut timed_out = false;
    let mut cancelled = false;
    let status = loop {
        if cancel.is_cancelled() {
            cancelled = true;
            group.kill();
            break exit_receiver.recv();
        }
        let now = Instant::now();
        let until_deadline = deadline.map_or(Duration::MAX, |deadline| {
            deadline.saturating_duration_since(now)
        });
        if until_deadline.is_zero() {
            timed_out = true;
            group.kill();
            break exit_receiver.recv();
        }
        match exit_receiver.recv_timeout(until_deadline.min(CANCEL_CHECK_INTERVAL)) {
            Ok(status) => break Ok(status),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break exit_receiver.recv(),
        }
    };
    let duration = start.elapsed();

    command_finished.store(true, Ordering::Release);
    // Neither thread panics on its own; a panic would be a bug worth surfacing as one.
    waiter_thread.join().expect("the waiter thread panicked");
    reader_thread
        .join()
        .expect("the output reader thread panicked");

    let status = status
        .map_err(|_| SandboxError::Wait {
            source: io::Error::other("the waiter thread stopped without a status"),
        })?
        .map_err(|source| SandboxError::Wait { source })?;
    let (output, output_total_bytes) = tail
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .snapshot();
    Ok(Finished {
        exit_code: status.code(),
        signal: status.signal(),
        timed_out,
        cancelled,
        duration,
        output,
        output_total_bytes,
    })
}

/// The process group of a spawned command, killed only while its leader is unreaped.
///
/// A process group ID stays reserved while the leader is a zombie, so a kill sent before
/// the leader is reaped cannot reach an unrelated group that reused the number.
#[derive(Debug)]
struct ProcessGroup {
    id: libc::pid_t,
    leader_reaped: Mutex<bool>,
}

impl ProcessGroup {
    fn new(leader: &Child) -> ProcessGroup {
        // Linux PIDs fit in pid_t; std hands them out as u32.
        let id = libc::pid_t::try_from(leader.id()).expect("a PID fits in pid_t");
        ProcessGroup {
            id,
            leader_reaped: Mutex::new(false),
        }
    }

    /// SIGKILL to every process in the group. Under bubblewrap the group holds the outer
    /// bubblewrap process; its death tears down the sandbox's PID namespace and with it
    /// everything the command started.
    fn kill(&self) {
        let leader_reaped = self
            .leader_reaped
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !*leader_reaped {
            self.kill_while_leader_unreaped();
        }
    }

    fn kill_while_leader_unreaped(&self) {
        // SAFETY: kill(2) has no memory-safety preconditions. ESRCH (the group is already
        // empty) is the expected result after a clean exit and is ignored.
        unsafe {
            libc::kill(-self.id, libc::SIGKILL);
        }
    }

    /// Waits until the leader exits, kills whatever it left running in its group (a
    /// background job would otherwise outlive the check and hold the output pipe open),
    /// then reaps it.
    fn wait_then_kill_leftovers(&self, mut leader: Child) -> io::Result<ExitStatus> {
        if wait_for_exit_without_reaping(self.id).is_err() {
            // Not expected on Linux. Fall back to a plain wait, without the cleanup of
            // leftovers, rather than hold the lock while the leader may still be running.
            let status = leader.wait();
            *self
                .leader_reaped
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = true;
            return status;
        }
        let mut leader_reaped = self
            .leader_reaped
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.kill_while_leader_unreaped();
        let status = leader.wait();
        *leader_reaped = true;
        status
    }
}

fn wait_for_exit_without_reaping(pid: libc::pid_t) -> io::Result<()> {
    loop {
        // SAFETY: siginfo_t is plain data for which all-zero bytes are a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t for the duration of the call.
        let result = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if result == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Reads the pipe into `tail` until every writer has closed it, or, once the command has
/// finished, until it stays quiet (or `DRAIN_LIMIT` passes): a process that escaped the
/// process group must not keep the runner waiting.
fn read_output(mut reader: PipeReader, tail: &Mutex<TailBuffer>, command_finished: &AtomicBool) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut drain_deadline: Option<Instant> = None;
    loop {
        let finished = command_finished.load(Ordering::Acquire);
        if finished {
            let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_LIMIT);
            if Instant::now() >= deadline {
                return;
            }
        }
        let mut poll_fd = libc::pollfd {
            fd: reader.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout_ms = if finished { 0 } else { READER_IDLE_CHECK_MS };
        // SAFETY: `poll_fd` is one valid pollfd and the count passed is 1.
        let ready = unsafe { libc::poll(&mut poll_fd, 1, timeout_ms) };
        if ready < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if ready == 0 {
            if finished {
                return;
            }
            continue;
        }
        match reader.read(&mut buffer) {
            Ok(0) => return,
            Ok(count) => tail
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(&buffer[..count]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// The one thread that spawns every command (see `spawn` for why).
pub(crate) mod spawner {
    use std::io;
    use std::process::{Child, Command};
    use std::sync::mpsc::{self, Sender};
    use std::sync::{Mutex, OnceLock, PoisonError};
    use std::thread;

    type Request = (Command, Sender<io::Result<Child>>);

    static REQUESTS: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();

    /// Starts the thread if it is not running yet (see [`crate::start_spawner`]).
    pub(crate) fn start() {
        requests();
    }

    pub(super) fn spawn(command: Command) -> io::Result<Child> {
        let requests = requests();
        let (reply, answer) = mpsc::channel();
        requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send((command, reply))
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        answer
            .recv()
            .map_err(|_| io::Error::other("the spawner thread is gone"))?
    }

    fn requests() -> &'static Mutex<Sender<Request>> {
        REQUESTS.get_or_init(|| {
            let (sender, receiver) = mpsc::channel::<Request>();
            thread::Builder::new()
                .name("airlock-spawner".into())
                .spawn(move || {
                    for (mut command, reply) in receiver {
                        let spawned = command.spawn();
                        // Closes airlock's copies of the output pipe's write end.
                        drop(command);
                        let _ = reply.send(spawned);
                    }
                })
                .expect("the spawner thread starts");
            Mutex::new(sender)
        })
    }
}
