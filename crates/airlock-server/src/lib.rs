//! The airlock service: the HTTP API, the worker pool that runs Level 1, and the glue
//! between the pure rules of `airlock-core` and the crates that do I/O (git, sandbox,
//! store). [`start`] binds nothing itself: callers hand it a bound listener, so tests
//! and the demo use port 0 without races.

mod api;
pub mod audit;
mod canary;
mod deploy;
mod drift;
mod intake;
mod intervention;
pub mod review;
mod standby;
mod synthetic;
pub mod tokens;
mod watch;
mod worker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use airlock_core::config::Config;
use airlock_git::{Repo, WorkspacePool};
use airlock_store::Store;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use api::{ChangeView, Endpoint};
pub use intake::GitTree;

/// Where and how the service runs.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// The user's repository (its work tree root). Never modified.
    pub repo_root: PathBuf,
    /// airlock's state directory (`.airlock/`): database, workspaces. Hidden from checks.
    pub state_dir: PathBuf,
    pub config: Config,
    /// Path to bwrap; None looks it up on PATH. Tests point it at a missing file.
    pub bwrap_path: Option<PathBuf>,
    /// The time review deadlines, rate limits and the policy's `input.time` are read
    /// from. [`SystemClock`] in production; tests use a [`ManualClock`].
    pub clock: Arc<dyn Clock>,
}

/// Where the service reads the time for review deadlines, rate limits and the policy.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that moves only when told to, for tests of deadlines.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(start_ms))
    }

    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Git(#[from] airlock_git::GitError),
    #[error(transparent)]
    Store(#[from] airlock_store::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("scan rules: {0}")]
    Rules(String),
    #[error("audit log: {0}")]
    Audit(#[from] airlock_audit::AuditError),
    #[error("audit sink: {0}")]
    Sink(String),
    #[error("review policy: {0}")]
    Policy(String),
    #[error("deploy: {0}")]
    Deploy(String),
}

/// Shared by request handlers and workers.
struct Shared<S> {
    store: S,
    repo: Repo,
    config: Config,
    /// Level 1's steps for this configuration, in order.
    plan: Vec<airlock_core::pipeline::PlannedStep>,
    /// Compiled once at start-up, with the repository's rules and allowlists.
    scanner: airlock_scan::Scanner,
    scan_options: airlock_scan::ScanOptions,
    workspaces: WorkspacePool,
    options: ServiceOptions,
    /// Wakes idle workers when a change is queued.
    work_available: Notify,
    /// Bumped whenever a worker records progress, for requests waiting on a decision.
    progress: tokio::sync::watch::Sender<u64>,
    shutting_down: AtomicBool,
    /// Cancels running checks at shutdown.
    cancel: airlock_sandbox::Cancel,
    audit: Arc<audit::AuditTrail>,
    policy: review::LoadedPolicy,
    clock: Arc<dyn Clock>,
    /// Levels 3 and 4, when `[deploy]` is configured; set once the provider is built
    /// (its fencing check needs this struct).
    deploy: std::sync::OnceLock<Arc<deploy::DeployRuntime>>,
    /// A workspace at the target branch's tip with its first check prepared.
    standby: std::sync::Mutex<Option<standby::Standby>>,
    /// Wakes the standby's keeper: the standby was taken, or airlock is stopping.
    standby_wanted: Notify,
}

/// A running service. Drop does not stop it: call [`Running::shutdown`].
pub struct Running {
    pub addr: SocketAddr,
    stop: Arc<dyn Fn() + Send + Sync>,
    http: JoinHandle<std::io::Result<()>>,
    workers: Vec<JoinHandle<()>>,
    standby_keeper: JoinHandle<()>,
    auditor: JoinHandle<()>,
    stop_auditor: Arc<Notify>,
    review_timer: JoinHandle<()>,
    stop_review_timer: Arc<Notify>,
    deployer: JoinHandle<()>,
    stop_deployer: Arc<Notify>,
    sinks: Vec<airlock_sinks::SinkRunner>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Stops accepting requests and work, cancels running checks (they are not recorded,
    /// so they run again after a restart) and waits for everything to stop.
    pub async fn shutdown(self) {
        (self.stop)();
        let _ = self.http.await;
        for worker in self.workers {
            let _ = worker.await;
        }
        let _ = self.standby_keeper.await;
        self.stop_review_timer.notify_one();
        let _ = self.review_timer.await;
        // The deployer stops between steps (a rollout resumes from its record) and stops
        // the services it started.
        self.stop_deployer.notify_one();
        let _ = self.deployer.await;
        // Last, so that the workers' final events go into the log, then a final checkpoint.
        self.stop_auditor.notify_one();
        let _ = self.auditor.await;
        let sinks = self.sinks;
        let _ = tokio::task::spawn_blocking(move || {
            for sink in sinks {
                let status = sink.stop();
                if status.lag > 0 {
                    tracing::warn!(sink = %status.name, lag = status.lag, "audit sink stopped behind the log; it resumes from its cursor");
                }
            }
        })
        .await;
    }
}

/// Starts the API on `listener` and the worker pool.
///
/// The store must belong to this process alone (SQLite): leases left by a previous
/// process are dropped so its in-flight changes resume at once.
pub async fn start<S: Store>(
    options: ServiceOptions,
    store: S,
    listener: TcpListener,
) -> Result<Running, ServiceError> {
    let repo = Repo::open(&options.repo_root)?;
    let workspaces = WorkspacePool::open(
        &repo,
        options.state_dir.join("workspaces"),
        options
            .config
            .server
            .workspaces
            .max(options.config.server.workers),
    )?;
    let (scanner, scan_options) = scanning(&options.repo_root, &options.config)?;
    let policy = review::load_policy(&options.repo_root, &options.config.review)
        .map_err(ServiceError::Policy)?;
    tracing::info!(source = %policy.source, sha256 = %policy.sha256, "review policy loaded");
    let audit = {
        let state_dir = options.state_dir.clone();
        let repo_root = options.repo_root.clone();
        tokio::task::spawn_blocking(move || audit::open_log(&state_dir, &repo_root))
            .await
            .map_err(|e| ServiceError::Rules(format!("audit log task: {e}")))??
    };
    let (audit_log, recovery, key_created) = audit;
    if key_created {
        tracing::info!(key = %audit_log.verifier().to_text(), "created the audit log key");
    }
    if recovery.truncated_bytes > 0 {
        tracing::warn!(
            bytes = recovery.truncated_bytes,
            entries = recovery.entries,
            "cut an unfinished write from the end of the audit log"
        );
    }
    let config_text =
        std::fs::read(options.repo_root.join(airlock_core::config::FILE_NAME)).unwrap_or_default();
    let config_sha256 = airlock_core::intake::sha256_hex(&config_text);
    let trail = Arc::new(audit::AuditTrail::new(
        audit_log,
        &options.state_dir,
        &options.repo_root,
        config_sha256.clone(),
    ));
    let sinks = audit::start_sinks(
        &trail,
        &options.config.audit.sinks,
        &options.state_dir,
        &options.repo_root,
    )
    .map_err(ServiceError::Sink)?;
    store
        .append_event(&airlock_core::event::NewEvent {
            change_id: None,
            at_ms: now_ms(),
            actor: airlock_core::event::Actor::system("server"),
            kind: airlock_core::event::EventKind::ConfigLoaded,
            data: serde_json::json!({
                "config_sha256": config_sha256,
                "policy_sha256": policy.sha256,
                "policy_source": policy.source,
                "airlock_version": env!("CARGO_PKG_VERSION"),
            }),
        })
        .await?;
    let released = store.release_all_leases().await?;
    if released > 0 {
        tracing::info!(
            released,
            "resuming changes left in flight by a previous run"
        );
    }
    let clock = options.clock.clone();
    let shared = Arc::new(Shared {
        store,
        repo,
        config: options.config.clone(),
        plan: airlock_core::pipeline::plan(&options.config),
        scanner,
        scan_options,
        workspaces,
        options,
        work_available: Notify::new(),
        progress: tokio::sync::watch::Sender::new(0),
        shutting_down: AtomicBool::new(false),
        cancel: airlock_sandbox::Cancel::default(),
        audit: trail,
        policy,
        clock,
        deploy: std::sync::OnceLock::new(),
        standby: std::sync::Mutex::new(None),
        standby_wanted: Notify::new(),
    });
    if let Some(config) = &shared.config.deploy {
        let runtime = deploy::build(&shared, config.clone())
            .await
            .map_err(ServiceError::Deploy)?;
        let _ = shared.deploy.set(Arc::new(runtime));
    }
    let addr = listener.local_addr()?;

    let stop_http = Arc::new(Notify::new());
    let router = api::router(shared.clone());
    let http = {
        let stop_http = stop_http.clone();
        tokio::spawn(async move {
            // Small JSON answers written in two segments would otherwise wait on Nagle's
            // algorithm and the peer's delayed ACK.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop_http.notified().await })
                .await
        })
    };
    // Before any background thread (the standby prepares a check from one) can start
    // it at its own lowered priority: checks run at the server's.
    airlock_sandbox::start_spawner();
    let workers = (0..shared.config.server.workers)
        .map(|n| {
            tokio::spawn(worker::run(
                shared.clone(),
                format!("{}-worker-{n}", std::process::id()),
            ))
        })
        .collect();
    let standby_keeper = tokio::spawn(standby::keep(shared.clone()));
    let stop_auditor = Arc::new(Notify::new());
    let auditor = tokio::spawn(audit::follow(
        shared.clone(),
        stop_auditor.clone(),
        shared.config.audit.checkpoint_interval,
    ));
    let stop_review_timer = Arc::new(Notify::new());
    let review_timer = tokio::spawn(review::watch(shared.clone(), stop_review_timer.clone()));
    let stop_deployer = Arc::new(Notify::new());
    let deployer = tokio::spawn(deploy::run(shared.clone(), stop_deployer.clone()));
    let stop = {
        let shared = shared.clone();
        Arc::new(move || {
            shared.shutting_down.store(true, Ordering::SeqCst);
            shared.cancel.cancel();
            shared.work_available.notify_waiters();
            shared.standby_wanted.notify_one();
            stop_http.notify_one();
        })
    };
    Ok(Running {
        addr,
        stop,
        http,
        workers,
        standby_keeper,
        auditor,
        stop_auditor,
        review_timer,
        stop_review_timer,
        deployer,
        stop_deployer,
        sinks,
    })
}

/// The scanner and its options for a repository: the built-in rules, the rule files and
/// severity overrides of `[scan]`, and its allowlists; the review policy is one of the
/// gate's own files. Rule files are read here, once.
pub fn scanning(
    repo_root: &Path,
    full_config: &airlock_core::config::Config,
) -> Result<(airlock_scan::Scanner, airlock_scan::ScanOptions), ServiceError> {
    let config = &full_config.scan;
    let mut rules = airlock_scan::RulePack::builtin();
    for file in &config.rule_files {
        let path = repo_root.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ServiceError::Rules(format!(
                "cannot read {} (`scan.rules`): {e}",
                path.display()
            ))
        })?;
        rules = rules
            .with_extra(&text)
            .map_err(|e| ServiceError::Rules(format!("{}: {e}", path.display())))?;
    }
    for (rule, severity) in &config.severity {
        rules
            .override_severity(rule, *severity)
            .map_err(|e| ServiceError::Rules(format!("`scan.severity`: {e}")))?;
    }
    let scanner =
        airlock_scan::Scanner::new(&rules).map_err(|e| ServiceError::Rules(e.to_string()))?;
    let mut options = airlock_scan::ScanOptions {
        allow_paths: config.allow_paths.clone(),
        allow_rules: config.allow_rules.clone(),
        allow_fingerprints: config.allow_fingerprints.clone(),
        mass_deletion: config.mass_deletion.clone(),
        gate_paths: vec![full_config.review.policy.clone()],
        ..airlock_scan::ScanOptions::default()
    };
    if let Some(dirs) = &config.migration_dirs {
        options.migration_dirs = dirs.clone();
    }
    Ok((scanner, options))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The state directory of a repository.
pub fn state_dir(repo_root: &Path) -> PathBuf {
    repo_root.join(".airlock")
}
