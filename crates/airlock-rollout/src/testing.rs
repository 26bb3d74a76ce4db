//! Real HAProxy and Prometheus processes for tests (feature `testing`): started on
//! 127.0.0.1 in a temporary directory, killed and reaped when their handle drops.
//!
//! A missing program fails loudly, naming its Debian package; nothing here skips.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when dropped.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port on 127.0.0.1 for a program that cannot be handed a bound listener.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free port on 127.0.0.1")
        .local_addr()
        .expect("the port's address")
        .port()
}

/// Panics, naming the Debian package, when `path` is not installed.
pub fn require_program(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: install the Debian package `{package}` (apt-get install {package})"
    );
}

/// Spawns `program` with its output in `log`, then polls `ready` until it holds; panics
/// with the log when the process exits or `limit` passes first.
fn spawn_until_ready(
    program: &str,
    args: &[String],
    log: &Path,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) -> KillOnDrop {
    let log_file = fs::File::create(log).expect("a log file");
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("a second log handle"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|error| panic!("{program} does not start: {error}"));
    let mut process = KillOnDrop(child);
    let deadline = Instant::now() + limit;
    while !ready() {
        if let Some(status) = process.0.try_wait().expect("the child's status") {
            panic!(
                "{program} exited ({status}): {}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{program} was not ready within {limit:?}: {}",
            fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    process
}

/// A real HAProxy with a runtime API socket and, for each backend it was started with,
/// a frontend in front of a backend whose servers `stable`, `baseline` and `canary`
/// start disabled at weight 0.
#[derive(Debug)]
pub struct HaproxyProcess {
    _dir: tempfile::TempDir,
    /// The runtime API's unix socket.
    pub socket: PathBuf,
    /// One frontend per backend, in the order given.
    pub frontends: Vec<SocketAddr>,
    _process: KillOnDrop,
}

impl HaproxyProcess {
    /// Starts HAProxy (Debian package `haproxy`) with the named backends.
    pub fn start(backends: &[&str]) -> HaproxyProcess {
        require_program("/usr/sbin/haproxy", "haproxy");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let socket = dir.path().join("admin.sock");
        let mut config = format!(
            "global\n    stats socket {} level admin\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n",
            socket.display()
        );
        let mut frontends = Vec::new();
        for backend in backends {
            let frontend = SocketAddr::from(([127, 0, 0, 1], free_port()));
            config.push_str(&format!(
                "frontend {backend}_in\n    bind {frontend}\n    default_backend {backend}\n\
                 backend {backend}\n    balance roundrobin\n\
                 \x20   server stable 127.0.0.1:1 weight 0 disabled\n\
                 \x20   server baseline 127.0.0.1:1 weight 0 disabled\n\
                 \x20   server canary 127.0.0.1:1 weight 0 disabled\n"
            ));
            frontends.push(frontend);
        }
        let config_path = dir.path().join("haproxy.cfg");
        fs::write(&config_path, config).expect("haproxy.cfg");
        let args = [
            "-f".to_owned(),
            config_path.display().to_string(),
            "-db".to_owned(),
        ];
        let process = spawn_until_ready(
            "/usr/sbin/haproxy",
            &args,
            &dir.path().join("haproxy.log"),
            Duration::from_secs(10),
            || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        );
        HaproxyProcess {
            _dir: dir,
            socket,
            frontends,
            _process: process,
        }
    }
}

/// A real Prometheus (Debian package `prometheus`) scraping every second.
#[derive(Debug)]
pub struct PrometheusProcess {
    dir: tempfile::TempDir,
    /// Its HTTP API, `http://127.0.0.1:PORT`.
    pub url: String,
    _process: KillOnDrop,
}

impl PrometheusProcess {
    /// Scrapes `targets`, each labelled `slot` with its name.
    pub fn with_static_targets(targets: &[(&str, SocketAddr)]) -> PrometheusProcess {
        let mut scrape = String::from("    static_configs:\n");
        for (slot, addr) in targets {
            scrape.push_str(&format!(
                "      - targets: [\"{addr}\"]\n        labels:\n          slot: {slot}\n"
            ));
        }
        PrometheusProcess::start(&scrape)
    }

    /// Scrapes the targets listed in the JSON files (Prometheus's `file_sd` format) that
    /// appear in [`PrometheusProcess::targets_dir`], re-read as they change: how a
    /// service that starts on a port chosen at run time is found.
    pub fn with_file_discovery() -> PrometheusProcess {
        PrometheusProcess::start(
            "    file_sd_configs:\n      - files: [\"targets/*.json\"]\n        refresh_interval: 1s\n",
        )
    }

    /// Where [`PrometheusProcess::with_file_discovery`] looks for target files.
    pub fn targets_dir(&self) -> PathBuf {
        self.dir.path().join("targets")
    }

    fn start(scrape: &str) -> PrometheusProcess {
        require_program("/usr/bin/prometheus", "prometheus");
        let dir = tempfile::tempdir().expect("a temporary directory");
        fs::create_dir(dir.path().join("targets")).expect("the targets directory");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: service\n    scrape_interval: 1s\n{scrape}"
        );
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, config).expect("prometheus.yml");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let url = format!("http://{addr}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let args = [
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address={addr}"),
        ];
        let process = spawn_until_ready(
            "/usr/bin/prometheus",
            &args,
            &dir.path().join("prometheus.log"),
            Duration::from_secs(30),
            || {
                agent
                    .get(format!("{url}/-/ready"))
                    .call()
                    .is_ok_and(|response| response.status() == 200)
            },
        );
        PrometheusProcess {
            dir,
            url,
            _process: process,
        }
    }
}
