//! Running versions as local service processes: build once per tree, start on a free
//! port, wait until ready, stop the whole process group.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};
use std::{fmt, io};

use crate::child::{self, Group};
use crate::{Environment, RolloutError, Slot, Version};

/// How much of a service's log an error quotes.
const LOG_TAIL_BYTES: usize = 4 * 1024;

/// How often readiness is probed.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How versions are built and started, from the operator's configuration.
///
/// Both commands run as `sh -c COMMAND` with the version's tree as working directory and
/// an exact environment: `PATH`, the entries of `env`, and the `AIRLOCK_*` variables
/// below. The server's own environment (its tokens, its database URL) is not passed on.
/// Versions reach the commands only through the environment, never inside the command
/// text.
#[derive(Clone, Debug)]
pub struct ProcessOptions {
    /// Run once per version tree before its first start, with `AIRLOCK_VERSION` set.
    pub build: Option<String>,
    /// Starts the service in the foreground; it must listen on `127.0.0.1:$PORT`. Gets
    /// `PORT`, `AIRLOCK_VERSION`, `AIRLOCK_ENVIRONMENT` and `AIRLOCK_SLOT`. A command that
    /// exits (daemonizes) counts as a failed start.
    pub start: String,
    /// How long a started service may take to accept connections (and answer
    /// `health_path` with 2xx). Default 30 s.
    pub ready_timeout: Duration,
    /// How long a build may take before its process group is killed. Default 10 min.
    pub build_timeout: Duration,
    /// How long a stopping service gets between SIGTERM and SIGKILL. Default 5 s.
    pub stop_timeout: Duration,
    /// If set (it starts with `/`), a service is ready only once `GET` of this path answers
    /// 2xx.
    pub health_path: Option<String>,
    /// Where each service's stdout and stderr go: `ENVIRONMENT-SLOT-COMMIT.log`, appended
    /// to, one header line per start. Created if missing.
    pub log_dir: PathBuf,
    /// Extra environment variables for builds and services.
    pub env: Vec<(String, String)>,
}

impl ProcessOptions {
    /// Options with the given start command and log directory and every default.
    pub fn new(start: impl Into<String>, log_dir: impl Into<PathBuf>) -> ProcessOptions {
        ProcessOptions {
            build: None,
            start: start.into(),
            ready_timeout: Duration::from_secs(30),
            build_timeout: Duration::from_secs(600),
            stop_timeout: Duration::from_secs(5),
            health_path: None,
            log_dir: log_dir.into(),
            env: Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), RolloutError> {
        if self.start.trim().is_empty() {
            return Err(RolloutError::InvalidOption {
                what: "start command",
                value: self.start.clone(),
                accepted: "a shell command that starts the service in the foreground on $PORT",
            });
        }
        if let Some(path) = &self.health_path
            && (!path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(RolloutError::InvalidOption {
                what: "health path",
                value: path.clone(),
                accepted: "an HTTP path starting with `/`, without spaces",
            });
        }
        child::validate_env(&self.env)
    }
}

/// A ready service process of one version in one slot.
///
/// Dropping it stops it (SIGTERM to its process group, SIGKILL after the stop timeout).
pub struct Service {
    environment: Environment,
    slot: Slot,
    commit: String,
    addr: SocketAddr,
    log: PathBuf,
    stop_timeout: Duration,
    group: Group,
}

impl fmt::Debug for Service {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Service")
            .field("environment", &self.environment)
            .field("slot", &self.slot)
            .field("commit", &self.commit)
            .field("addr", &self.addr)
            .field("pid", &self.group.id())
            .finish()
    }
}

impl Service {
    /// Where the service listens: 127.0.0.1 and the port airlock gave it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The commit it runs.
    pub fn commit(&self) -> &str {
        &self.commit
    }

    /// The slot it was started for (or promoted to).
    pub fn slot(&self) -> Slot {
        self.slot
    }

    /// The environment it runs in.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// The file its output goes to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process ID of the group leader (`sh`), which is also the process group ID.
    pub fn pid(&self) -> u32 {
        self.group.id()
    }

    /// Whether the start command is still running.
    pub fn is_running(&self) -> bool {
        !self.group.leader_exited()
    }

    /// "the canary service of staging (version abc123)", for messages.
    fn describe(&self) -> String {
        format!(
            "the {} service of {} (version {})",
            self.slot, self.environment, self.commit
        )
    }

    /// Sends SIGTERM to the service's process group without waiting (a later `stop` or
    /// drop finishes the job).
    pub(crate) fn terminate(&self) {
        self.group.signal(libc::SIGTERM);
    }

    /// Stops the service: SIGTERM to its process group, up to the stop timeout for it to
    /// exit, then SIGKILL to whatever is left in the group.
    pub fn stop(mut self) -> Result<(), RolloutError> {
        self.group
            .stop(self.stop_timeout)
            .map(drop)
            .map_err(|source| RolloutError::Wait {
                what: "a stopping service",
                source,
            })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.group.stop(self.stop_timeout);
    }
}

/// A request to the spawner thread.
struct SpawnRequest {
    command: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// Runs versions as local processes, at most one per (environment, slot).
///
/// Services are spawned by one long-lived thread the runner owns: PR_SET_PDEATHSIG fires
/// when the *spawning thread* ends, and callers run on `spawn_blocking` threads that the
/// runtime retires after a while of idleness, which would kill healthy services. The
/// thread ends with the runner, after every service has stopped. Dropping the runner
/// stops every service it holds.
pub struct ServiceRunner {
    options: ProcessOptions,
    services: Mutex<BTreeMap<(Environment, Slot), Service>>,
    /// The commit last built in each tree; each tree's lock is held while it builds.
    built: Mutex<BTreeMap<PathBuf, Arc<Mutex<Option<String>>>>>,
    spawner: mpsc::Sender<SpawnRequest>,
}

impl fmt::Debug for ServiceRunner {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        formatter
            .debug_struct("ServiceRunner")
            .field("options", &self.options)
            .field("services", &services.values().collect::<Vec<_>>())
            .finish()
    }
}

impl ServiceRunner {
    /// Checks the options, creates the log directory and starts the spawner thread.
    pub fn new(options: ProcessOptions) -> Result<ServiceRunner, RolloutError> {
        options.validate()?;
        fs::create_dir_all(&options.log_dir).map_err(|source| RolloutError::File {
            action: "create the service log directory",
            path: options.log_dir.clone(),
            source,
        })?;
        let (spawner, requests) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("airlock-service-spawner".to_owned())
            .spawn(move || {
                for SpawnRequest { mut command, reply } in requests {
                    let _ = reply.send(command.spawn());
                }
            })
            .map_err(|source| RolloutError::Spawn {
                what: "the service spawner thread",
                program: "airlock".to_owned(),
                source,
            })?;
        Ok(ServiceRunner {
            options,
            services: Mutex::new(BTreeMap::new()),
            built: Mutex::new(BTreeMap::new()),
            spawner,
        })
    }

    /// The options the runner was made with.
    pub fn options(&self) -> &ProcessOptions {
        &self.options
    }

    fn base_command(&self, script: &str, tree: &Path) -> Command {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(script).current_dir(tree);
        child::exact_environment(&mut command, &self.options.env);
        command
    }

    /// Runs the build command in `version.tree` unless this tree was already built at this
    /// commit by this runner. Concurrent calls for one tree wait for each other; a failed
    /// build is retried by the next call. Errors carry the build's output tail.
    pub fn build(&self, version: &Version) -> Result<(), RolloutError> {
        version.validate()?;
        if !version.tree.is_dir() {
            return Err(RolloutError::MissingTree {
                commit: version.commit.clone(),
                tree: version.tree.clone(),
            });
        }
        let Some(script) = &self.options.build else {
            return Ok(());
        };
        let tree_lock = {
            let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(built.entry(version.tree.clone()).or_default())
        };
        let mut built_commit = tree_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if built_commit.as_deref() == Some(version.commit.as_str()) {
            return Ok(());
        }
        let mut command = self.base_command(script, &version.tree);
        command.env("AIRLOCK_VERSION", &version.commit);
        let timeout = self.options.build_timeout;
        let completed = child::run_to_completion(command, timeout, "the build command")?;
        if !completed.succeeded() {
            return Err(RolloutError::Build {
                commit: version.commit.clone(),
                outcome: completed.outcome(timeout),
                output_tail: completed.output_tail(),
            });
        }
        *built_commit = Some(version.commit.clone());
        Ok(())
    }

    /// Builds `version` if needed, starts it for `slot` of `environment` on a free port and
    /// returns it once ready. The service is not yet registered: hand it to
    /// [`ServiceRunner::install`] once traffic may reach it, or drop it to stop it.
    ///
    /// Fails, with the log's tail, if the process exits before it is ready or is not ready
    /// within the ready timeout (it is stopped then).
    pub fn start(
        &self,
        environment: Environment,
        slot: Slot,
        version: &Version,
    ) -> Result<Service, RolloutError> {
        self.build(version)?;
        let port = free_port()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = self.options.log_dir.join(format!(
            "{}-{}-{}.log",
            environment.as_str(),
            slot.as_str(),
            version.commit
        ));
        let (log_file, log_start) = open_log(&log, environment, slot, &version.commit, port)?;
        let stderr = log_file.try_clone().map_err(|source| RolloutError::File {
            action: "duplicate the handle of",
            path: log.clone(),
            source,
        })?;
        let mut command = self.base_command(&self.options.start, &version.tree);
        command
            .env("PORT", port.to_string())
            .env("AIRLOCK_VERSION", &version.commit)
            .env("AIRLOCK_ENVIRONMENT", environment.as_str())
            .env("AIRLOCK_SLOT", slot.as_str())
            .stdout(log_file)
            .stderr(stderr);
        child::isolate(&mut command);
        let child = self.spawn(command)?;
        let mut service = Service {
            environment,
            slot,
            commit: version.commit.clone(),
            addr,
            log,
            stop_timeout: self.options.stop_timeout,
            group: Group::new(child),
        };
        self.wait_ready(&mut service, log_start)?;
        Ok(service)
    }

    fn spawn(&self, command: Command) -> Result<Child, RolloutError> {
        let spawn_error = |source| RolloutError::Spawn {
            what: "the start command",
            program: "/bin/sh".to_owned(),
            source,
        };
        let (reply, answer) = mpsc::channel();
        self.spawner
            .send(SpawnRequest { command, reply })
            .map_err(|_| spawn_error(io::Error::other("the spawner thread has stopped")))?;
        answer
            .recv()
            .map_err(|_| spawn_error(io::Error::other("the spawner thread has stopped")))?
            .map_err(spawn_error)
    }

    fn wait_ready(&self, service: &mut Service, log_start: u64) -> Result<(), RolloutError> {
        let timeout = self.options.ready_timeout;
        let deadline = Instant::now() + timeout;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let mut last_problem: String;
        loop {
            if service.group.leader_exited() {
                let status =
                    service
                        .group
                        .kill_and_reap()
                        .map_err(|source| RolloutError::Wait {
                            what: "a starting service",
                            source,
                        })?;
                return Err(RolloutError::ExitedBeforeReady {
                    service: service.describe(),
                    outcome: child::describe_status(status),
                    log: service.log.clone(),
                    log_tail: child::file_tail(&service.log, log_start, LOG_TAIL_BYTES),
                });
            }
            match TcpStream::connect_timeout(&service.addr, Duration::from_millis(500)) {
                Err(error) => last_problem = format!("connecting: {error}"),
                Ok(_) => match &self.options.health_path {
                    None => return Ok(()),
                    Some(path) => {
                        let url = format!("http://{}{path}", service.addr);
                        match agent.get(&url).call() {
                            Ok(response) if response.status().is_success() => return Ok(()),
                            Ok(response) => {
                                last_problem = format!("GET {path} answered {}", response.status());
                            }
                            Err(error) => last_problem = format!("GET {path}: {error}"),
                        }
                    }
                },
            }
            if Instant::now() >= deadline {
                let _ = service.group.stop(self.options.stop_timeout);
                let needs = match &self.options.health_path {
                    Some(path) => format!("listen on $PORT and answer GET {path} with 2xx"),
                    None => "listen on $PORT".to_owned(),
                };
                return Err(RolloutError::NotReady {
                    service: service.describe(),
                    problem: format!(
                        "on {} after {timeout:?} ({last_problem}): it must {needs}",
                        service.addr
                    ),
                    log: service.log.clone(),
                    log_tail: child::file_tail(&service.log, log_start, LOG_TAIL_BYTES),
                });
            }
            thread::sleep(READY_POLL_INTERVAL);
        }
    }

    /// Registers `service` in its slot and returns the previous occupant, which the caller
    /// stops (dropping it stops it) once traffic has moved off it.
    pub fn install(&self, service: Service) -> Option<Service> {
        let key = (service.environment, service.slot);
        self.lock().insert(key, service)
    }

    /// Unregisters and returns the service of a slot, if any.
    pub fn take(&self, environment: Environment, slot: Slot) -> Option<Service> {
        self.lock().remove(&(environment, slot))
    }

    /// Moves the service of slot `from` to slot `to` (promotion) and returns what `to`
    /// held. Fails with [`RolloutError::SlotEmpty`] if `from` runs nothing.
    pub fn move_slot(
        &self,
        environment: Environment,
        from: Slot,
        to: Slot,
    ) -> Result<Option<Service>, RolloutError> {
        let mut services = self.lock();
        let mut service = services
            .remove(&(environment, from))
            .ok_or(RolloutError::SlotEmpty {
                environment,
                slot: from,
            })?;
        service.slot = to;
        Ok(services.insert((environment, to), service))
    }

    /// Where the service of a slot listens, if one runs there.
    pub fn addr(&self, environment: Environment, slot: Slot) -> Option<SocketAddr> {
        self.lock().get(&(environment, slot)).map(Service::addr)
    }

    /// The commit a slot runs, if any.
    pub fn commit(&self, environment: Environment, slot: Slot) -> Option<String> {
        self.lock()
            .get(&(environment, slot))
            .map(|service| service.commit.clone())
    }

    /// Stops the service of a slot, if any.
    pub fn stop(&self, environment: Environment, slot: Slot) -> Result<(), RolloutError> {
        match self.take(environment, slot) {
            Some(service) => service.stop(),
            None => Ok(()),
        }
    }

    /// Stops every service, each with its stop timeout, all at once.
    pub fn stop_all(&self) {
        let services = std::mem::take(&mut *self.lock());
        // SIGTERM to all first, so stopping N services takes one stop timeout, not N.
        for service in services.values() {
            service.terminate();
        }
        drop(services);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Environment, Slot), Service>> {
        self.services.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ServiceRunner {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// A port on 127.0.0.1 that was free a moment ago. Another process may take it before the
/// service binds it; the service then fails to start and says so in its log.
fn free_port() -> Result<u16, RolloutError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|source| RolloutError::NoFreePort { source })?;
    let port = listener
        .local_addr()
        .map_err(|source| RolloutError::NoFreePort { source })?
        .port();
    Ok(port)
}

/// Opens a service's log for appending, writes a header line, and returns the file and
/// the offset at which this start's output begins.
fn open_log(
    path: &Path,
    environment: Environment,
    slot: Slot,
    commit: &str,
    port: u16,
) -> Result<(fs::File, u64), RolloutError> {
    let file_error = |source| RolloutError::File {
        action: "open the service log",
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(file_error)?;
    let start = file.metadata().map_err(file_error)?.len();
    writeln!(
        file,
        "=== airlock: starting {commit} in the {slot} slot of {environment} on 127.0.0.1:{port}"
    )
    .map_err(file_error)?;
    Ok((file, start))
}
