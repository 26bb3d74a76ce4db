//! A long-lived `git cat-file --batch-command` process per repository. Intake reads a base
//! commit's revision, tree entries and blobs for every proposal, and the workers read
//! them again; starting git costs milliseconds each time, a question to a running
//! process tens of microseconds.
//!
//! The process is started by a thread created with the reader, so it runs at the CPU
//! priority of whoever opened the repository (see [`Spawner`]).
//!
//! One request is written and its whole answer read before the next, so neither pipe can
//! fill while the other side waits. Any I/O error or unexpected answer ends the process;
//! the next request starts a new one, so a killed or confused git costs one error, not
//! the reader.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::{Mutex, PoisonError, mpsc};

use crate::GitError;
use crate::command::Git;
use crate::repo::unexpected;

/// What git answered about one object name.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The name resolves to nothing (or, for `commit:path`, the path is absent or lies
    /// below something that is not a directory).
    Missing,
    /// A short id or name matching several objects.
    Ambiguous,
    Found {
        oid: String,
        kind: String,
        content: Vec<u8>,
    },
}

#[derive(Debug)]
pub(crate) struct ObjectReader {
    git_dir: PathBuf,
    process: Mutex<Option<Process>>,
    spawner: Spawner,
}

/// Starts the reader's git process from a thread of its own, created with the reader.
///
/// A process inherits the niceness of the thread that starts it, and niceness can be
/// raised without privilege but never lowered back. Background work (workspace resets,
/// the standby workspace) runs on lowered-priority threads and reads objects too: when
/// one of them happened to start the reader's process, every intake afterwards waited on
/// a background-priority git (intake took 40 ms at the median under load, instead of
/// well under 1 ms). Started from here, the process has the priority of the code that
/// opened the repository, whoever needs it first or again.
#[derive(Debug)]
struct Spawner {
    /// `None` when the thread could not be started: processes are then started in place.
    requests: Option<mpsc::Sender<mpsc::Sender<Result<Process, GitError>>>>,
}

impl Spawner {
    fn new(git_dir: PathBuf) -> Spawner {
        let (sender, receiver) = mpsc::channel::<mpsc::Sender<Result<Process, GitError>>>();
        let started = std::thread::Builder::new()
            .name("git-objects".to_owned())
            .spawn(move || {
                // Ends when the reader, and with it the sender, is dropped.
                for reply in receiver {
                    let _ = reply.send(Process::start(&git_dir));
                }
            });
        Spawner {
            requests: started.ok().map(|_| sender),
        }
    }

    fn start(&self, git_dir: &Path) -> Result<Process, GitError> {
        let Some(requests) = &self.requests else {
            return Process::start(git_dir);
        };
        let (reply, answer) = mpsc::channel();
        match requests.send(reply).ok().and_then(|()| answer.recv().ok()) {
            Some(started) => started,
            // The thread is gone (it cannot end while the reader lives, short of a panic).
            None => Process::start(git_dir),
        }
    }
}

#[derive(Debug)]
struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    args: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        // Closing stdin ends git's loop; kill in case it is stuck, then reap.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ObjectReader {
    pub(crate) fn new(git_dir: PathBuf) -> ObjectReader {
        ObjectReader {
            spawner: Spawner::new(git_dir.clone()),
            git_dir,
            process: Mutex::new(None),
        }
    }

    /// The object id and type of `name` (any single-object expression git accepts).
    pub(crate) fn info(&self, name: &str) -> Result<Answer, GitError> {
        self.ask("info", name)
    }

    /// The object id, type and content of `name`.
    pub(crate) fn contents(&self, name: &str) -> Result<Answer, GitError> {
        self.ask("contents", name)
    }

    fn ask(&self, command: &str, name: &str) -> Result<Answer, GitError> {
        // Requests are NUL-terminated; a NUL inside would split one request into two.
        if name.contains('\0') {
            return Err(GitError::InvalidPath {
                path: name.replace('\0', "\\0"),
                reason: "contains a NUL byte",
            });
        }
        let mut slot = self.process.lock().unwrap_or_else(PoisonError::into_inner);
        // A process that died since the last request (killed, out of memory) fails at the
        // first write: start a fresh one and ask once more.
        for attempt in 0..2 {
            if slot.is_none() {
                *slot = Some(self.spawner.start(&self.git_dir)?);
            }
            let process = slot.as_mut().expect("just started");
            match process.ask(command, name) {
                Ok(answer) => return Ok(answer),
                Err(error) => {
                    *slot = None;
                    if attempt == 1 || !matches!(error, Failure::Write(_)) {
                        return Err(error.into_git_error());
                    }
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }
}

enum Failure {
    Write(GitError),
    Read(GitError),
}

impl Failure {
    fn into_git_error(self) -> GitError {
        match self {
            Failure::Write(error) | Failure::Read(error) => error,
        }
    }
}

impl Process {
    fn start(git_dir: &Path) -> Result<Process, GitError> {
        let (mut child, args) = Git::for_repository(git_dir)
            .args(["cat-file", "--batch-command", "-z"])
            .spawn_interactive()?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        Ok(Process {
            child,
            stdin,
            stdout,
            args,
        })
    }

    fn ask(&mut self, command: &str, name: &str) -> Result<Answer, Failure> {
        let request = format!("{command} {name}\0");
        self.stdin
            .write_all(request.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| {
                Failure::Write(unexpected(
                    &self.args,
                    format!("could not write a request: {e}"),
                ))
            })?;
        let read_error = |detail: String| Failure::Read(unexpected(&self.args, detail));

        let mut header = Vec::new();
        self.stdout
            .read_until(b'\n', &mut header)
            .map_err(|e| read_error(format!("could not read: {e}")))?;
        let Some(header) = header.strip_suffix(b"\n") else {
            return Err(read_error("git stopped answering".into()));
        };
        // Missing and ambiguous names are echoed back, and may contain spaces: recognise
        // them by comparing with what was asked.
        if header.strip_suffix(b" missing") == Some(name.as_bytes()) {
            return Ok(Answer::Missing);
        }
        if header.strip_suffix(b" ambiguous") == Some(name.as_bytes()) {
            return Ok(Answer::Ambiguous);
        }
        let text = std::str::from_utf8(header)
            .map_err(|_| read_error("a header that is not text".into()))?;
        let mut fields = text.split(' ');
        let (Some(oid), Some(kind), Some(size), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(read_error(format!("bad header {text:?}")));
        };
        let size: usize = size
            .parse()
            .map_err(|_| read_error(format!("bad size in {text:?}")))?;
        let mut content = Vec::new();
        if command == "contents" {
            content.resize(size + 1, 0);
            self.stdout
                .read_exact(&mut content)
                .map_err(|e| read_error(format!("object content ended early: {e}")))?;
            if content.pop() != Some(b'\n') {
                return Err(read_error(
                    "object content is not followed by a newline".into(),
                ));
            }
        }
        Ok(Answer::Found {
            oid: oid.to_owned(),
            kind: kind.to_owned(),
            content,
        })
    }
}
