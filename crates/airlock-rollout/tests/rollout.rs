//! The providers against real things: real service processes, the real built-in proxy, a
//! real HAProxy (Debian package `haproxy`), a real Prometheus (Debian package
//! `prometheus`), real shell scripts. Everything listens on 127.0.0.1 and everything a
//! test starts is killed when the test's handle drops.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_proxy::sample::{self, SampleBehaviour};
use airlock_rollout::testing::{HaproxyProcess, PrometheusProcess, free_port};
use airlock_rollout::{
    BuiltinProxy, CommandOptions, CommandProvider, Environment, Fence, FenceToken, GuardVerdict,
    Guards, Haproxy, HaproxyBackend, HaproxyOptions, HaproxySocket, Observed, ProcessOptions,
    ProcessProvider, PrometheusQueries, PrometheusSource, Provider, RolloutError, Router,
    ServiceRunner, Slot, Version, Weights,
};

// ---------------------------------------------------------------------------------------
// Helpers.

/// The server's fencing check, reduced to its rule: a per-target high-water mark that a
/// token must reach.
#[derive(Debug, Default)]
struct HighWaterFence {
    marks: Mutex<BTreeMap<String, u64>>,
}

impl Fence for HighWaterFence {
    fn admit(&self, target: &str, token: FenceToken) -> Result<(), RolloutError> {
        let mut marks = self.marks.lock().unwrap();
        let mark = marks.entry(target.to_owned()).or_insert(0);
        if token.0 < *mark {
            return Err(RolloutError::StaleFence {
                target: target.to_owned(),
                token: token.0,
                current: *mark,
            });
        }
        *mark = token.0;
        Ok(())
    }
}

fn fence() -> Arc<HighWaterFence> {
    Arc::new(HighWaterFence::default())
}

/// A version whose tree is a fresh directory under `root`.
fn version(root: &Path, commit: &str) -> Version {
    let tree = root.join(format!("tree-{commit}"));
    fs::create_dir_all(&tree).unwrap();
    Version {
        commit: commit.to_owned(),
        tree,
    }
}

fn process_options(root: &Path, start: &str) -> ProcessOptions {
    let mut options = ProcessOptions::new(start, root.join("logs"));
    options.ready_timeout = Duration::from_secs(15);
    options.stop_timeout = Duration::from_secs(2);
    options
}

/// Whether a process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_pid(path: &Path) -> u32 {
    let mut pid = None;
    wait_until("the pid file", Duration::from_secs(5), || {
        pid = fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap()
}

fn http_get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .unwrap_or_else(|error| panic!("GET {url}: {error}"));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, body)
}

// ---------------------------------------------------------------------------------------
// ServiceRunner.

#[test]
fn service_runner_starts_a_real_service_and_stop_kills_its_whole_group() {
    let root = tempfile::tempdir().unwrap();
    // A helper in the background proves the whole group dies, not just the leader.
    let start = r#"sleep 600 & echo $! > helper.pid
echo "$PORT $AIRLOCK_VERSION $AIRLOCK_ENVIRONMENT $AIRLOCK_SLOT ${SECRET_FROM_SERVER-unset} $GREETING" > env.txt
exec python3 -m http.server "$PORT" --bind 127.0.0.1"#;
    let mut options = process_options(root.path(), start);
    options.health_path = Some("/".to_owned());
    options.env = vec![("GREETING".to_owned(), "hello".to_owned())];
    let runner = ServiceRunner::new(options).unwrap();
    let version = version(root.path(), "abc123");

    let service = runner
        .start(Environment::Staging, Slot::Canary, &version)
        .unwrap();
    let (status, _) = http_get(&format!("http://{}/", service.addr()));
    assert_eq!(status, 200);
    let env = fs::read_to_string(version.tree.join("env.txt")).unwrap();
    assert_eq!(
        env.trim(),
        format!(
            "{} abc123 staging canary unset hello",
            service.addr().port()
        )
    );
    assert!(service.log_path().starts_with(root.path().join("logs")));

    let leader = service.pid();
    let helper = read_pid(&version.tree.join("helper.pid"));
    assert!(alive(leader) && alive(helper));
    assert!(runner.install(service).is_none());
    assert_eq!(
        runner.commit(Environment::Staging, Slot::Canary).as_deref(),
        Some("abc123")
    );
    runner.stop(Environment::Staging, Slot::Canary).unwrap();
    assert!(!alive(leader), "the service itself is stopped");
    wait_until(
        "the background helper to die",
        Duration::from_secs(5),
        || !alive(helper),
    );
    assert_eq!(runner.addr(Environment::Staging, Slot::Canary), None);
}

#[test]
fn a_start_command_that_exits_at_once_is_an_error_carrying_its_log_tail() {
    let root = tempfile::tempdir().unwrap();
    let options = process_options(root.path(), "echo \"port $PORT is cursed\" >&2; exit 3");
    let runner = ServiceRunner::new(options).unwrap();
    let error = runner
        .start(
            Environment::Production,
            Slot::Stable,
            &version(root.path(), "0badc0de"),
        )
        .unwrap_err();
    let RolloutError::ExitedBeforeReady {
        outcome, log_tail, ..
    } = &error
    else {
        panic!("expected ExitedBeforeReady, got {error}");
    };
    assert_eq!(outcome, "exited with status 3");
    assert!(log_tail.contains("is cursed"), "{log_tail}");
    assert!(error.to_string().contains("is cursed"), "{error}");
}

#[test]
fn a_service_that_never_listens_is_stopped_after_the_ready_timeout() {
    let root = tempfile::tempdir().unwrap();
    let mut options = process_options(root.path(), "echo $$ > leader.pid; echo waiting; sleep 600");
    options.ready_timeout = Duration::from_millis(600);
    let runner = ServiceRunner::new(options).unwrap();
    let version = version(root.path(), "feed");
    let started = Instant::now();
    let error = runner
        .start(Environment::Staging, Slot::Stable, &version)
        .unwrap_err();
    assert!(matches!(error, RolloutError::NotReady { .. }), "{error}");
    assert!(error.to_string().contains("waiting"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!alive(read_pid(&version.tree.join("leader.pid"))));
}

#[test]
fn a_failing_build_is_an_error_and_a_build_runs_once_per_tree_and_commit() {
    let root = tempfile::tempdir().unwrap();
    let mut options = process_options(
        root.path(),
        "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1",
    );
    options.build = Some(
        r#"echo "build $AIRLOCK_VERSION" >> ../builds.log
if [ -e broken ]; then echo "error: missing semicolon" >&2; exit 1; fi"#
            .to_owned(),
    );
    let runner = ServiceRunner::new(options).unwrap();
    let good = version(root.path(), "aaaa1111");
    let builds = root.path().join("builds.log");

    runner.build(&good).unwrap();
    let service = runner
        .start(Environment::Staging, Slot::Stable, &good)
        .unwrap();
    drop(service);
    runner.build(&good).unwrap();
    assert_eq!(fs::read_to_string(&builds).unwrap(), "build aaaa1111\n");

    let broken = version(root.path(), "bbbb2222");
    fs::write(broken.tree.join("broken"), "").unwrap();
    let error = runner
        .start(Environment::Staging, Slot::Canary, &broken)
        .unwrap_err();
    let RolloutError::Build {
        outcome,
        output_tail,
        ..
    } = &error
    else {
        panic!("expected a build error, got {error}");
    };
    assert_eq!(outcome, "exited with status 1");
    assert!(output_tail.contains("missing semicolon"), "{output_tail}");
    // A failed build is tried again.
    fs::remove_file(broken.tree.join("broken")).unwrap();
    runner.build(&broken).unwrap();
    assert_eq!(
        fs::read_to_string(&builds).unwrap(),
        "build aaaa1111\nbuild bbbb2222\nbuild bbbb2222\n"
    );
}

#[test]
fn versions_that_are_not_commit_ids_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let runner = ServiceRunner::new(process_options(root.path(), "true")).unwrap();
    for commit in ["", "v1.2", "ABCDEF", "abc", "$(reboot)", "../../etc"] {
        let version = Version {
            commit: commit.to_owned(),
            tree: root.path().to_owned(),
        };
        let error = runner
            .start(Environment::Staging, Slot::Canary, &version)
            .unwrap_err();
        assert!(
            matches!(error, RolloutError::InvalidCommit { .. }),
            "{commit}: {error}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The command provider.

/// The operator's script: records every call, keeps weights in a file per environment,
/// lies about them when `lie` exists, fails a deploy of commit dead0000.
const DEPLOY_SCRIPT: &str = r#"#!/bin/sh
set -eu
state="$STATE_DIR"
echo "$1 env=$AIRLOCK_ENVIRONMENT slot=${AIRLOCK_SLOT-} version=${AIRLOCK_VERSION-} fence=${AIRLOCK_FENCE-} target=$AIRLOCK_TARGET pwd=$(pwd)" >> "$state/calls.log"
[ "$1" = "$AIRLOCK_ACTION" ]
case "$1" in
  deploy)
    if [ "$AIRLOCK_VERSION" = dead0000 ]; then echo "kubectl: deployment exceeded its progress deadline" >&2; exit 1; fi
    [ "$(pwd)" = "$AIRLOCK_TREE" ] ;;
  weights)
    printf '{"stable":%s,"baseline":%s,"canary":%s}\n' "$AIRLOCK_WEIGHT_STABLE" "$AIRLOCK_WEIGHT_BASELINE" "$AIRLOCK_WEIGHT_CANARY" > "$state/weights-$AIRLOCK_ENVIRONMENT.json" ;;
  get-weights)
    if [ -e "$state/lie" ]; then echo '{"stable":100,"baseline":0,"canary":0}'; else cat "$state/weights-$AIRLOCK_ENVIRONMENT.json"; fi ;;
  promote|stop) ;;
  url) echo "http://$AIRLOCK_ENVIRONMENT.example.test/" ;;
  *) echo "unknown action $1" >&2; exit 2 ;;
esac
"#;

struct ScriptFixture {
    root: tempfile::TempDir,
    fence: Arc<HighWaterFence>,
    provider: CommandProvider,
}

impl ScriptFixture {
    fn new() -> ScriptFixture {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let program = root.path().join("deploy.sh");
        fs::write(&program, DEPLOY_SCRIPT).unwrap();
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        let mut options = CommandOptions::new(&program);
        options.timeout = Duration::from_secs(10);
        options.env = vec![("STATE_DIR".to_owned(), root.path().display().to_string())];
        let fence = fence();
        let provider = CommandProvider::new(options, "shop", fence.clone()).unwrap();
        ScriptFixture {
            root,
            fence,
            provider,
        }
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.root.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn command_provider_calls_the_script_once_per_action_and_verifies_weights() {
    let fixture = ScriptFixture::new();
    let provider = &fixture.provider;
    let token = FenceToken(7);
    let version = version(fixture.root.path(), "c0ffee");
    assert_eq!(provider.name(), "command");

    provider
        .deploy(token, Environment::Production, Slot::Canary, &version)
        .unwrap();
    let step = Weights::step(25).unwrap();
    assert_eq!(
        step,
        Weights {
            stable: 50,
            baseline: 25,
            canary: 25
        }
    );
    assert_eq!(
        provider
            .set_weights(token, Environment::Production, step)
            .unwrap(),
        step
    );
    provider.promote(token, Environment::Production).unwrap();
    provider
        .stop(token, Environment::Production, Slot::Baseline)
        .unwrap();
    assert_eq!(
        provider.url(Environment::Staging).as_deref(),
        Some("http://staging.example.test/")
    );
    assert!(provider.observe(Environment::Production).unwrap().is_none());

    let tree = version.tree.display();
    let target = "target=shop";
    assert_eq!(
        fixture.calls(),
        [
            format!("deploy env=production slot=canary version=c0ffee fence=7 {target} pwd={tree}"),
            format!(
                "weights env=production slot= version= fence=7 {target} pwd={}",
                std::env::current_dir().unwrap().display()
            ),
            format!(
                "get-weights env=production slot= version= fence= {target} pwd={}",
                std::env::current_dir().unwrap().display()
            ),
            format!(
                "promote env=production slot= version= fence=7 {target} pwd={}",
                std::env::current_dir().unwrap().display()
            ),
            format!(
                "stop env=production slot=baseline version= fence=7 {target} pwd={}",
                std::env::current_dir().unwrap().display()
            ),
            format!(
                "url env=staging slot= version= fence= {target} pwd={}",
                std::env::current_dir().unwrap().display()
            ),
        ]
    );
}

#[test]
fn command_provider_detects_a_script_that_lies_about_weights() {
    let fixture = ScriptFixture::new();
    fs::write(fixture.root.path().join("lie"), "").unwrap();
    let wanted = Weights::step(5).unwrap();
    let error = fixture
        .provider
        .set_weights(FenceToken(1), Environment::Production, wanted)
        .unwrap_err();
    let RolloutError::WeightMismatch { wanted: w, actual } = error else {
        panic!("expected WeightMismatch, got {error}");
    };
    assert_eq!(w, wanted);
    assert_eq!(actual, Weights::STABLE_ONLY);
}

#[test]
fn command_provider_reports_a_failing_script_with_its_output_tail() {
    let fixture = ScriptFixture::new();
    let error = fixture
        .provider
        .deploy(
            FenceToken(1),
            Environment::Staging,
            Slot::Canary,
            &version(fixture.root.path(), "dead0000"),
        )
        .unwrap_err();
    let RolloutError::Command {
        action,
        outcome,
        output_tail,
        ..
    } = &error
    else {
        panic!("expected a command error, got {error}");
    };
    assert_eq!(*action, "deploy");
    assert_eq!(outcome, "exited with status 1");
    assert!(output_tail.contains("progress deadline"), "{output_tail}");
    let error = fixture
        .provider
        .set_weights(
            FenceToken(1),
            Environment::Staging,
            Weights {
                stable: 90,
                baseline: 0,
                canary: 5,
            },
        )
        .unwrap_err();
    assert!(
        matches!(error, RolloutError::InvalidWeights { .. }),
        "{error}"
    );
}

#[test]
fn command_provider_refuses_a_stale_token_without_calling_the_script() {
    let fixture = ScriptFixture::new();
    let provider = &fixture.provider;
    provider
        .set_weights(FenceToken(2), Environment::Production, Weights::STABLE_ONLY)
        .unwrap();
    let calls = fixture.calls();
    let error = provider
        .set_weights(
            FenceToken(1),
            Environment::Production,
            Weights::step(50).unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(
            error,
            RolloutError::StaleFence {
                token: 1,
                current: 2,
                ..
            }
        ),
        "{error}"
    );
    let error = provider
        .deploy(
            FenceToken(1),
            Environment::Production,
            Slot::Canary,
            &version(fixture.root.path(), "abcd"),
        )
        .unwrap_err();
    assert!(matches!(error, RolloutError::StaleFence { .. }), "{error}");
    assert_eq!(fixture.calls(), calls, "the script was not called");
    assert_eq!(
        provider.get_weights(Environment::Production).unwrap(),
        Weights::STABLE_ONLY
    );
    assert_eq!(fixture.fence.marks.lock().unwrap()["shop"], 2);
}

// ---------------------------------------------------------------------------------------
// Guards.

#[test]
fn guards_judge_windows() {
    fn check(requests: u64, errors: u64, p99_ms: Option<u64>, expected: &str) {
        let window = Observed {
            requests,
            errors,
            latency: None,
            p99: p99_ms.map(Duration::from_millis),
        };
        let verdict = match Guards::default().judge(&window) {
            GuardVerdict::Healthy => "healthy".to_owned(),
            GuardVerdict::Unhealthy { reason } => format!("unhealthy: {reason}"),
            GuardVerdict::InsufficientData { seen, needed } => {
                format!("insufficient: {seen}/{needed}")
            }
            GuardVerdict::MissingData { reason } => format!("missing: {reason}"),
        };
        assert_eq!(
            verdict, expected,
            "{requests} requests, {errors} errors, p99 {p99_ms:?}"
        );
    }
    check(0, 0, None, "insufficient: 0/100");
    check(99, 50, Some(900), "insufficient: 99/100");
    check(100, 2, Some(500), "healthy");
    check(
        1_203,
        49,
        Some(120),
        "unhealthy: error rate 4.1 % over 1,203 requests exceeds 2 %",
    );
    check(
        1_000,
        21,
        Some(20),
        "unhealthy: error rate 2.1 % over 1,000 requests exceeds 2 %",
    );
    check(
        100_000,
        0,
        Some(612),
        "unhealthy: p99 latency 612 ms over 100,000 requests exceeds 500 ms",
    );
    check(
        2_000,
        100,
        Some(1_500),
        "unhealthy: error rate 5 % over 2,000 requests exceeds 2 %; p99 latency 1,500 ms over 2,000 requests exceeds 500 ms",
    );
    check(
        500,
        0,
        None,
        "missing: no p99 latency figure for 500 requests: the source reports no latency",
    );
    check(
        500,
        50,
        None,
        "unhealthy: error rate 10 % over 500 requests exceeds 2 %",
    );
}

#[test]
fn observed_windows_subtract_snapshots_and_survive_restarts() {
    let snapshot = |requests, errors| Observed {
        requests,
        errors,
        latency: None,
        p99: Some(Duration::from_millis(40)),
    };
    assert_eq!(snapshot(150, 7).since(&snapshot(100, 2)), snapshot(50, 5));
    // The process was replaced: its counters started again from zero.
    assert_eq!(snapshot(30, 1).since(&snapshot(100, 2)), snapshot(30, 1));
}

#[test]
fn weights_of_canary_steps() {
    let expected = [
        (0, (100, 0, 0)),
        (1, (98, 1, 1)),
        (5, (90, 5, 5)),
        (25, (50, 25, 25)),
        (50, (0, 50, 50)),
        (75, (0, 25, 75)),
        (100, (0, 0, 100)),
    ];
    for (canary, (stable, baseline, canary_weight)) in expected {
        let weights = Weights::step(canary).unwrap();
        assert_eq!(
            (weights.stable, weights.baseline, weights.canary),
            (stable, baseline, canary_weight),
            "step {canary}"
        );
        weights.validate().unwrap();
    }
    assert!(Weights::step(101).is_err());
}

// ---------------------------------------------------------------------------------------
// HAProxy.

/// A service that answers every GET with the slot it was started for and its version.
const ECHO_SERVICE: &str = r#"exec python3 -c '
import http.server, os
answer = (os.environ["AIRLOCK_SLOT"] + " " + os.environ["AIRLOCK_VERSION"]).encode()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'"#;

/// A router over `haproxy`'s backend `app`, whose frontend is production's URL.
fn router(haproxy: &HaproxyProcess) -> Haproxy {
    let mut options = HaproxyOptions::new(HaproxySocket::Unix(haproxy.socket.clone()));
    let mut backend = HaproxyBackend::new("app");
    backend.url = Some(format!("http://{}", haproxy.frontends[0]));
    options.production = Some(backend);
    Haproxy::new(options).unwrap()
}

/// Sends `count` GETs to `url` and counts the answers.
fn tally(url: &str, count: usize) -> BTreeMap<String, usize> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut answers = BTreeMap::new();
    for _ in 0..count {
        let mut response = agent.get(url).call().unwrap();
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        *answers.entry(format!("{status} {body}")).or_insert(0) += 1;
    }
    answers
}

fn assert_near(answers: &BTreeMap<String, usize>, key: &str, expected: usize, slack: usize) {
    let got = answers.get(key).copied().unwrap_or(0);
    assert!(
        got.abs_diff(expected) <= slack,
        "`{key}` answered {got} times, expected {expected} ± {slack}: {answers:?}"
    );
}

#[test]
fn haproxy_provider_deploys_shifts_traffic_verifies_and_promotes() {
    let haproxy = HaproxyProcess::start(&["app"]);
    let root = tempfile::tempdir().unwrap();
    let runner = ServiceRunner::new(process_options(root.path(), ECHO_SERVICE)).unwrap();
    let fence = fence();
    let provider = ProcessProvider::new("shop", fence, runner, Box::new(router(&haproxy)));
    let production = Environment::Production;
    let token = FenceToken(1);
    let old = version(root.path(), "aaaa1111");
    let new = version(root.path(), "bbbb2222");
    let url = provider.url(production).unwrap();
    assert_eq!(provider.name(), "haproxy");
    assert_eq!(url, format!("http://{}", haproxy.frontends[0]));

    provider
        .deploy(token, production, Slot::Stable, &old)
        .unwrap();
    assert_eq!(
        provider.weights(production).unwrap(),
        Weights {
            stable: 0,
            baseline: 0,
            canary: 0
        },
        "a new slot starts at weight 0"
    );
    provider
        .set_weights(token, production, Weights::STABLE_ONLY)
        .unwrap();
    assert_eq!(
        tally(&url, 20),
        BTreeMap::from([("200 stable aaaa1111".to_owned(), 20)])
    );

    provider
        .deploy(token, production, Slot::Canary, &new)
        .unwrap();
    provider
        .deploy(token, production, Slot::Baseline, &old)
        .unwrap();
    let half = Weights {
        stable: 50,
        baseline: 0,
        canary: 50,
    };
    assert_eq!(provider.set_weights(token, production, half).unwrap(), half);
    let answers = tally(&url, 200);
    assert_near(&answers, "200 stable aaaa1111", 100, 10);
    assert_near(&answers, "200 canary bbbb2222", 100, 10);

    let step = Weights::step(25).unwrap();
    assert_eq!(provider.set_weights(token, production, step).unwrap(), step);
    let answers = tally(&url, 200);
    assert_near(&answers, "200 stable aaaa1111", 100, 10);
    assert_near(&answers, "200 baseline aaaa1111", 50, 10);
    assert_near(&answers, "200 canary bbbb2222", 50, 10);

    // Someone changes a weight behind airlock's back: the verifying read notices.
    let router = router(&haproxy);
    assert_eq!(router.command("set weight app/canary 7").unwrap(), "");
    let error = provider.verify_weights(production, step).unwrap_err();
    let RolloutError::WeightMismatch { wanted, actual } = error else {
        panic!("expected WeightMismatch, got {error}");
    };
    assert_eq!(wanted, step);
    assert_eq!(
        actual,
        Weights {
            stable: 50,
            baseline: 25,
            canary: 7
        }
    );
    // So does one that takes a server out.
    assert_eq!(
        router
            .command("set server app/baseline state maint")
            .unwrap(),
        ""
    );
    let error = provider.verify_weights(production, step).unwrap_err();
    assert!(
        matches!(
            error,
            RolloutError::WeightMismatch {
                actual: Weights { baseline: 0, .. },
                ..
            }
        ),
        "{error}"
    );
    // HAProxy's refusals are errors that quote it: a server missing from haproxy.cfg.
    let mut options = HaproxyOptions::new(HaproxySocket::Unix(haproxy.socket.clone()));
    let mut misnamed = HaproxyBackend::new("app");
    misnamed.canary_server = "ghost".to_owned();
    options.production = Some(misnamed);
    let misconfigured = Haproxy::new(options).unwrap();
    let error = misconfigured.set_weights(production, step).unwrap_err();
    let RolloutError::Haproxy { command, answer } = &error else {
        panic!("expected an HAProxy refusal, got {error}");
    };
    assert_eq!(command, "set weight app/ghost 25");
    assert_eq!(answer, "No such server.");

    let old_stable = provider.runner().addr(production, Slot::Stable).unwrap();
    provider.promote(token, production).unwrap();
    assert_eq!(provider.weights(production).unwrap(), Weights::STABLE_ONLY);
    assert_eq!(
        tally(&url, 20),
        BTreeMap::from([("200 canary bbbb2222".to_owned(), 20)])
    );
    assert_eq!(
        provider
            .runner()
            .commit(production, Slot::Stable)
            .as_deref(),
        Some("bbbb2222")
    );
    assert_eq!(provider.runner().addr(production, Slot::Canary), None);
    assert_eq!(provider.runner().addr(production, Slot::Baseline), None);
    assert!(
        std::net::TcpStream::connect(old_stable).is_err(),
        "the old stable version has stopped"
    );

    provider.stop(token, production, Slot::Stable).unwrap();
    assert_eq!(
        provider.weights(production).unwrap(),
        Weights {
            stable: 0,
            baseline: 0,
            canary: 0
        }
    );
    let error = provider
        .set_weights(token, Environment::Staging, Weights::STABLE_ONLY)
        .unwrap_err();
    assert!(matches!(error, RolloutError::SlotEmpty { .. }), "{error}");
    provider.shutdown();
}

// ---------------------------------------------------------------------------------------
// The local provider: sample service processes behind the built-in proxy.

/// Not a test: the sample service as a process. The start command below runs this test
/// binary with `SAMPLE_SERVICE=1` and only this entry point, which then serves
/// `airlock-proxy`'s sample service on `$PORT` as `$AIRLOCK_VERSION` (misbehaving as the
/// tree's `behaviour.txt` says) until it is killed. In a normal test run it returns at
/// once.
#[test]
fn sample_service_entry_point() {
    if std::env::var_os("SAMPLE_SERVICE").is_none() {
        return;
    }
    let port: u16 = std::env::var("PORT").unwrap().parse().unwrap();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let behaviour = match Path::new("behaviour.txt").exists() {
        true => SampleBehaviour::read(Path::new("behaviour.txt")).unwrap(),
        false => SampleBehaviour::default(),
    };
    let version = std::env::var("AIRLOCK_VERSION").unwrap();
    let result = sample::run(listener, behaviour, version);
    panic!("the sample service stopped: {result:?}");
}

/// A start command running [`sample_service_entry_point`]; the binary's path reaches it
/// through the environment, never inside the command text.
const SAMPLE_START: &str =
    r#"exec "$SAMPLE_BINARY" sample_service_entry_point --exact --nocapture --test-threads=1"#;

fn sample_options(root: &Path) -> ProcessOptions {
    let mut options = process_options(root, SAMPLE_START);
    options.health_path = Some("/healthz".to_owned());
    options.env = vec![
        (
            "SAMPLE_BINARY".to_owned(),
            std::env::current_exe().unwrap().display().to_string(),
        ),
        ("SAMPLE_SERVICE".to_owned(), "1".to_owned()),
    ];
    options
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn local_provider(
    root: &Path,
    fence: Arc<HighWaterFence>,
    runtime: &tokio::runtime::Runtime,
) -> ProcessProvider {
    let listen = || TcpListener::bind("127.0.0.1:0").unwrap();
    let router = BuiltinProxy::with_listeners(listen(), listen(), runtime.handle()).unwrap();
    let runner = ServiceRunner::new(sample_options(root)).unwrap();
    ProcessProvider::new("shop", fence, runner, Box::new(router))
}

fn window(
    after: &BTreeMap<Slot, Observed>,
    before: &BTreeMap<Slot, Observed>,
    slot: Slot,
) -> Observed {
    let empty = Observed::default();
    after[&slot].since(before.get(&slot).unwrap_or(&empty))
}

#[test]
fn local_provider_runs_a_canary_beside_a_baseline_and_measures_each_slot() {
    let runtime = runtime();
    let root = tempfile::tempdir().unwrap();
    let provider = local_provider(root.path(), fence(), &runtime);
    let production = Environment::Production;
    let token = FenceToken(3);
    let old = version(root.path(), "aaaa1111");
    let new = version(root.path(), "bbbb2222");
    fs::write(new.tree.join("behaviour.txt"), "error_rate = 0.1\n").unwrap();
    assert_eq!(provider.name(), "local");
    let url = provider.url(production).unwrap();
    assert!(provider.url(Environment::Staging).unwrap() != url);

    provider
        .deploy(token, production, Slot::Stable, &old)
        .unwrap();
    provider
        .set_weights(token, production, Weights::STABLE_ONLY)
        .unwrap();
    assert_eq!(
        tally(&url, 10),
        BTreeMap::from([("200 ok aaaa1111\n".to_owned(), 10)])
    );

    provider
        .deploy(token, production, Slot::Canary, &new)
        .unwrap();
    provider
        .deploy(token, production, Slot::Baseline, &old)
        .unwrap();
    assert_eq!(
        provider.weights(production).unwrap(),
        Weights::STABLE_ONLY,
        "new slots start at weight 0"
    );
    let step = Weights::step(25).unwrap();
    assert_eq!(provider.set_weights(token, production, step).unwrap(), step);

    let before = provider.observe(production).unwrap().unwrap();
    let answers = tally(&url, 400);
    let after = provider.observe(production).unwrap().unwrap();
    // Smooth weighted round-robin splits every block of 100 requests exactly.
    assert_eq!(
        answers,
        BTreeMap::from([
            ("200 ok aaaa1111\n".to_owned(), 300),
            ("200 ok bbbb2222\n".to_owned(), 90),
            ("500 error bbbb2222\n".to_owned(), 10),
        ])
    );
    let stable = window(&after, &before, Slot::Stable);
    let baseline = window(&after, &before, Slot::Baseline);
    let canary = window(&after, &before, Slot::Canary);
    assert_eq!((stable.requests, stable.errors), (200, 0));
    assert_eq!((baseline.requests, baseline.errors), (100, 0));
    assert_eq!((canary.requests, canary.errors), (100, 10));
    assert!(canary.p99.is_some() && canary.latency.is_some());

    let guards = Guards::default();
    assert_eq!(guards.judge(&baseline), GuardVerdict::Healthy);
    assert_eq!(
        guards.judge(&canary),
        GuardVerdict::Unhealthy {
            reason: "error rate 10 % over 100 requests exceeds 2 %".to_owned()
        }
    );

    let canary_log = provider.runner().addr(production, Slot::Canary).unwrap();
    provider.promote(token, production).unwrap();
    assert_eq!(provider.weights(production).unwrap(), Weights::STABLE_ONLY);
    assert_eq!(
        provider.runner().addr(production, Slot::Stable),
        Some(canary_log),
        "the canary's process became the stable one without a restart"
    );
    let answers = tally(&url, 20);
    assert_eq!(
        answers.len(),
        2,
        "only the new version answers: {answers:?}"
    );
    assert_eq!(answers["500 error bbbb2222\n"], 2);

    provider.stop(token, production, Slot::Stable).unwrap();
    assert_eq!(
        tally(&url, 1),
        BTreeMap::from([("503 no backend\n".to_owned(), 1)])
    );
    provider.shutdown();
}

#[test]
fn a_stale_fencing_token_is_refused_before_anything_is_touched() {
    let runtime = runtime();
    let root = tempfile::tempdir().unwrap();
    let fence = fence();
    let provider = local_provider(root.path(), fence.clone(), &runtime);
    let production = Environment::Production;
    let old = version(root.path(), "aaaa1111");
    provider
        .deploy(FenceToken(1), production, Slot::Stable, &old)
        .unwrap();
    // A second holder takes the lease with token 2.
    provider
        .set_weights(FenceToken(2), production, Weights::STABLE_ONLY)
        .unwrap();
    let stable = provider.runner().addr(production, Slot::Stable).unwrap();

    fn refused<T: std::fmt::Debug>(result: Result<T, RolloutError>) {
        let error = result.unwrap_err();
        assert!(
            matches!(
                error,
                RolloutError::StaleFence {
                    token: 1,
                    current: 2,
                    ..
                }
            ),
            "{error}"
        );
    }
    refused(provider.set_weights(FenceToken(1), production, Weights::step(50).unwrap()));
    refused(provider.deploy(
        FenceToken(1),
        production,
        Slot::Canary,
        &version(root.path(), "bbbb2222"),
    ));
    refused(provider.stop(FenceToken(1), production, Slot::Stable));
    refused(provider.promote(FenceToken(1), production));

    assert_eq!(provider.weights(production).unwrap(), Weights::STABLE_ONLY);
    assert_eq!(
        provider.runner().addr(production, Slot::Stable),
        Some(stable)
    );
    assert_eq!(provider.runner().addr(production, Slot::Canary), None);
    let url = provider.url(production).unwrap();
    assert_eq!(
        tally(&url, 3),
        BTreeMap::from([("200 ok aaaa1111\n".to_owned(), 3)])
    );
    provider.shutdown();
}

// ---------------------------------------------------------------------------------------
// Prometheus.

#[test]
fn prometheus_source_reads_requests_errors_and_latency_per_slot() {
    let runtime = runtime();
    let serve = |behaviour: SampleBehaviour, version: &str| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        sample::serve(listener, behaviour, version.to_owned(), runtime.handle()).unwrap()
    };
    let failing = SampleBehaviour {
        error_rate: 0.1,
        ..SampleBehaviour::default()
    };
    let stable = serve(SampleBehaviour::default(), "aaaa1111");
    let baseline = serve(SampleBehaviour::default(), "aaaa1111");
    let canary = serve(failing, "bbbb2222");
    let prometheus = PrometheusProcess::with_static_targets(&[
        ("stable", stable.local_addr()),
        ("baseline", baseline.local_addr()),
        ("canary", canary.local_addr()),
    ]);
    tally(&format!("http://{}/", stable.local_addr()), 150);
    tally(&format!("http://{}/", baseline.local_addr()), 50);
    tally(&format!("http://{}/", canary.local_addr()), 50);

    let selector = r#"version="{version}",slot="{slot}""#;
    let queries = PrometheusQueries {
        requests: format!("sum(sample_requests_total{{{selector}}})"),
        errors: format!(r#"sum(sample_requests_total{{{selector},code="500"}})"#),
        latency_p99: Some(format!(
            "histogram_quantile(0.99, sum by (le) (rate(sample_request_duration_seconds_bucket{{{selector}}}[1m])))"
        )),
    };
    let source = PrometheusSource::new(&prometheus.url, queries.clone()).unwrap();
    let slots = [
        (Slot::Stable, "aaaa1111"),
        (Slot::Baseline, "aaaa1111"),
        (Slot::Canary, "bbbb2222"),
    ];
    let started = Instant::now();
    let observed = loop {
        match source.observe(&slots) {
            Ok(observed)
                if observed.values().map(|o| o.requests).collect::<Vec<_>>() == [150, 50, 50] =>
            {
                break observed;
            }
            Ok(_) | Err(RolloutError::NoData { .. }) => {}
            Err(error) => panic!("{error}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Prometheus did not have the counts within 30 s: {:?}",
            source.observe(&slots)
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(observed[&Slot::Stable].errors, 0);
    assert_eq!(observed[&Slot::Baseline].errors, 0);
    assert_eq!(observed[&Slot::Canary].errors, 5);
    assert!(observed.values().all(|o| o.latency.is_none()));

    // The p99 is a rate over a window: it exists once two scrapes saw traffic between
    // them (before that it is NaN, reported as no figure).
    let canary_only = [(Slot::Canary, "bbbb2222")];
    let p99 = loop {
        tally(&format!("http://{}/", canary.local_addr()), 10);
        if let Some(p99) = source.observe(&canary_only).unwrap()[&Slot::Canary].p99 {
            break p99;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no p99 from Prometheus within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        p99 <= Duration::from_millis(5),
        "{p99:?} (the fastest bucket is 5 ms)"
    );

    // A version nobody scrapes is missing data, not a version without errors.
    let error = source.observe(&[(Slot::Canary, "cccc3333")]).unwrap_err();
    assert!(
        matches!(
            error,
            RolloutError::NoData {
                slot: Slot::Canary,
                ..
            }
        ),
        "{error}"
    );
    // A broken template is Prometheus's refusal, quoted.
    let broken = PrometheusSource::new(
        &prometheus.url,
        PrometheusQueries {
            requests: "sum(".to_owned(),
            ..queries
        },
    )
    .unwrap();
    let error = broken.observe(&slots).unwrap_err();
    assert!(
        matches!(error, RolloutError::PrometheusQuery { .. }),
        "{error}"
    );
    // Nothing listening is a transport error naming the URL.
    let nowhere = PrometheusSource::new(
        format!("http://127.0.0.1:{}", free_port()),
        PrometheusQueries::default(),
    )
    .unwrap();
    let error = nowhere.observe(&slots).unwrap_err();
    assert!(
        matches!(error, RolloutError::PrometheusTransport { .. }),
        "{error}"
    );
}
