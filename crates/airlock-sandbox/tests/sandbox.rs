//! Runs real commands through the sandbox runner: limits, process cleanup, environment,
//! and, under bubblewrap, what the command can and cannot reach on the host.
//!
//! Workspaces and state directories live in /var/tmp, not /tmp: the sandbox's private /tmp
//! would hide anything under the host's /tmp anyway, which would let the isolation
//! assertions pass for the wrong reason.

use std::collections::BTreeSet;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use airlock_sandbox::{
    Cancel, CommandSpec, Isolation, Outcome, SandboxConfig, SandboxError, SandboxMode, probe, run,
};
use tempfile::TempDir;

const HIDDEN_DATABASE_CONTENT: &str = "airlock-database-secret-content";

/// A workspace and a state directory holding `airlock.db`, which is hidden.
struct Fixture {
    workspace: TempDir,
    state: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let workspace = tempfile::Builder::new()
            .prefix("airlock-ws-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let state = tempfile::Builder::new()
            .prefix("airlock-state-")
            .tempdir_in("/var/tmp")
            .unwrap();
        fs::write(state.path().join("airlock.db"), HIDDEN_DATABASE_CONTENT).unwrap();
        Fixture { workspace, state }
    }

    fn config(&self, mode: SandboxMode) -> SandboxConfig {
        SandboxConfig {
            mode,
            workspace: self.workspace.path().to_path_buf(),
            hidden_paths: vec![
                self.state.path().join("airlock.db"),
                PathBuf::from("/nonexistent/airlock-state"),
            ],
            env: base_env(),
            bwrap_path: None,
            share_network: false,
        }
    }

    fn database(&self) -> PathBuf {
        self.state.path().join("airlock.db")
    }
}

fn base_env() -> Vec<(String, String)> {
    vec![
        (
            "PATH".to_string(),
            "/usr/local/bin:/usr/bin:/bin".to_string(),
        ),
        ("LANG".to_string(), "C".to_string()),
    ]
}

fn spec(command: &str) -> CommandSpec {
    CommandSpec {
        name: "test".to_string(),
        command: command.to_string(),
        timeout: Duration::from_secs(20),
        output_limit: 64 * 1024,
    }
}

fn run_ok(config: &SandboxConfig, spec: &CommandSpec) -> Outcome {
    run(config, spec, &Cancel::new())
        .unwrap_or_else(|error| panic!("{:?} could not run: {error}", spec.command))
}

fn output_text(outcome: &Outcome) -> String {
    String::from_utf8_lossy(&outcome.output).into_owned()
}

/// Whether bubblewrap can be used here. Without it, the bubblewrap tests fail under CI and
/// are skipped, loudly, elsewhere.
fn bubblewrap_available(test: &str) -> bool {
    let config = Fixture::new().config(SandboxMode::Required);
    match probe(&config) {
        Ok(isolation) => {
            assert!(isolation.is_sandboxed(), "{isolation}");
            true
        }
        Err(error) => {
            let message = format!(
                "{test} needs a working bubblewrap: install the Debian package `bubblewrap` (apt-get install bubblewrap): {error}"
            );
            if std::env::var_os("CI").is_some() {
                panic!("{message}");
            }
            eprintln!("skipping {message}");
            false
        }
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists && !is_zombie(Path::new(&format!("/proc/{pid}")))
}

/// Processes whose command line contains `marker`, found through the host's /proc, so
/// that it also sees processes inside the sandbox's PID namespace.
fn processes_with_argument(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
        if cmdline.split('\0').any(|argument| argument == marker) && !is_zombie(&entry.path()) {
            found.push(format!(
                "{}: {}",
                entry.file_name().to_string_lossy(),
                cmdline.replace('\0', " ")
            ));
        }
    }
    found
}

/// A killed process whose parent never reaps it stays a zombie; it is dead all the same.
fn is_zombie(process_directory: &Path) -> bool {
    fs::read_to_string(process_directory.join("stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

/// Retries `condition` for up to two seconds: SIGKILL is delivered asynchronously.
fn eventually(condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn mode_round_trips_through_its_config_spelling() {
    for mode in [
        SandboxMode::Required,
        SandboxMode::BestEffort,
        SandboxMode::Off,
    ] {
        assert_eq!(mode.to_string().parse::<SandboxMode>().unwrap(), mode);
    }
    assert_eq!(
        "best-effort".parse::<SandboxMode>().unwrap(),
        SandboxMode::BestEffort
    );
    let error = "strict".parse::<SandboxMode>().unwrap_err().to_string();
    for expected in ["strict", "required", "best-effort", "off"] {
        assert!(error.contains(expected), "{error}");
    }
}

#[test]
fn exit_codes_and_signals_are_reported() {
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Off);
    let check = |command: &str, exit_code: Option<i32>, signal: Option<i32>, success: bool| {
        let outcome = run_ok(&config, &spec(command));
        assert_eq!(
            (outcome.exit_code, outcome.signal),
            (exit_code, signal),
            "{command}"
        );
        assert_eq!(outcome.success(), success, "{command}");
        assert!(!outcome.timed_out && !outcome.cancelled, "{command}");
    };
    check("true", Some(0), None, true);
    check("false", Some(1), None, false);
    check("exit 3", Some(3), None, false);
    check("exit 255", Some(255), None, false);
    check("kill -9 $$", None, Some(9), false);
    check("kill -15 $$", None, Some(15), false);
    check("sh -c 'kill -15 $$'; exit $?", Some(143), None, false);
}

#[test]
fn a_fast_command_returns_without_polling_delay() {
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Off);
    let started = Instant::now();
    let outcome = run_ok(&config, &spec("true"));
    let elapsed = started.elapsed();
    eprintln!(
        "`true` unsandboxed took {elapsed:?} (command {:?})",
        outcome.duration
    );
    // Generous for a loaded CI machine; a polling loop of a second or more would show.
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
}

#[test]
fn output_keeps_the_tail_and_counts_everything() {
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Off);
    // About 1.3 MB of numbered lines, so the kept tail can be checked byte for byte.
    let expected: String = (1..=200_000).map(|number| format!("{number}\n")).collect();
    let limit = 64 * 1024;
    let outcome = run_ok(
        &config,
        &CommandSpec {
            output_limit: limit,
            ..spec("seq 1 200000")
        },
    );
    assert!(outcome.success());
    assert_eq!(outcome.output_total_bytes, expected.len() as u64);
    assert_eq!(outcome.output.len(), limit);
    assert_eq!(
        outcome.output,
        expected.as_bytes()[expected.len() - limit..]
    );
}

#[test]
fn output_limits_cut_at_the_tail() {
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Off);
    let check = |limit: usize, expected: &str| {
        let outcome = run_ok(
            &config,
            &CommandSpec {
                output_limit: limit,
                ..spec("printf abc; printf def >&2")
            },
        );
        assert_eq!(output_text(&outcome), expected, "limit {limit}");
        assert_eq!(outcome.output_total_bytes, 6, "limit {limit}");
    };
    check(0, "");
    check(1, "f");
    check(3, "def");
    check(4, "cdef");
    check(6, "abcdef");
    check(1000, "abcdef");
}

#[test]
fn stdout_and_stderr_interleave_in_write_order() {
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Off);
    let outcome = run_ok(
        &config,
        &spec("echo out1; echo err1 >&2; echo out2; echo err2 >&2; echo out3"),
    );
    assert_eq!(output_text(&outcome), "out1\nerr1\nout2\nerr2\nout3\n");
}

#[test]
fn stdin_is_empty() {
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Off);
    let outcome = run_ok(&config, &spec("wc -c"));
    assert_eq!(output_text(&outcome).trim(), "0");
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Off);
    let pid_file = fixture.workspace.path().join("background.pid");
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let outcome = run_ok(
        &config,
        &CommandSpec {
            timeout,
            ..spec("sleep 30 & echo $! > background.pid; echo started; sleep 30")
        },
    );
    let elapsed = started.elapsed();
    assert!(
        outcome.timed_out && !outcome.cancelled && !outcome.success(),
        "{outcome:?}"
    );
    assert_eq!(outcome.signal, Some(libc::SIGKILL));
    assert_eq!(output_text(&outcome), "started\n");
    assert!(
        elapsed >= timeout && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    let background: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        eventually(|| !process_alive(background)),
        "background sleep {background} survived the timeout"
    );
}

#[test]
fn a_background_job_holding_the_pipe_does_not_delay_a_finished_command() {
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Off);
    let started = Instant::now();
    let outcome = run_ok(
        &config,
        &spec("sleep 30 & echo $! > background.pid; echo done"),
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(outcome.success() && !outcome.timed_out, "{outcome:?}");
    assert_eq!(output_text(&outcome), "done\n");
    let pid_file = fixture.workspace.path().join("background.pid");
    let background: i32 = fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        eventually(|| !process_alive(background)),
        "background sleep {background} outlived the command"
    );
}

#[test]
fn cancel_from_another_thread_kills_the_command() {
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Off);
    let cancel = Cancel::new();
    let canceller = {
        let cancel = cancel.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            cancel.cancel();
        })
    };
    let started = Instant::now();
    let outcome = run(
        &config,
        &spec("sleep 30 & echo $! > background.pid; sleep 30"),
        &cancel,
    )
    .unwrap();
    canceller.join().unwrap();
    assert!(
        outcome.cancelled && !outcome.timed_out && !outcome.success(),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let pid_file = fixture.workspace.path().join("background.pid");
    let background: i32 = fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        eventually(|| !process_alive(background)),
        "background sleep {background} survived the cancel"
    );

    // Already cancelled: nothing is allowed to run on.
    let outcome = run(&config, &spec("sleep 30"), &cancel).unwrap();
    assert!(
        outcome.cancelled && outcome.duration < Duration::from_secs(2),
        "{outcome:?}"
    );
}

/// Variables a shell or bubblewrap sets by itself; everything else must come from the
/// configured environment.
const SET_BY_SHELL_OR_BUBBLEWRAP: &[&str] = &["PWD", "OLDPWD", "SHLVL", "_"];

fn environment_names(outcome: &Outcome) -> BTreeSet<String> {
    output_text(outcome)
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.to_string()))
        .filter(|name| !SET_BY_SHELL_OR_BUBBLEWRAP.contains(&name.as_str()))
        .collect()
}

fn check_environment_is_exactly_the_given_one(mode: SandboxMode) {
    let fixture = Fixture::new();
    let mut config = fixture.config(mode);
    config.env.push((
        "AIRLOCK_CHECK_VISIBLE".to_string(),
        "yes please".to_string(),
    ));
    let outcome = run_ok(&config, &spec("env"));
    assert!(outcome.success(), "{outcome:?}");
    let expected: BTreeSet<String> = ["PATH", "LANG", "AIRLOCK_CHECK_VISIBLE", "TMPDIR"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(
        environment_names(&outcome),
        expected,
        "{mode}: {}",
        output_text(&outcome)
    );
    assert!(output_text(&outcome).contains("AIRLOCK_CHECK_VISIBLE=yes please\n"));
    assert!(output_text(&outcome).contains("TMPDIR=/tmp\n"));
    // The test process's own environment (cargo sets many variables) does not leak.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    assert!(!output_text(&outcome).contains("CARGO_MANIFEST_DIR"));

    config
        .env
        .push(("TMPDIR".to_string(), "/tmp/given".to_string()));
    let outcome = run_ok(&config, &spec("echo \"$TMPDIR\""));
    assert_eq!(
        output_text(&outcome),
        "/tmp/given\n",
        "a given TMPDIR is kept"
    );
}

#[test]
fn environment_is_exactly_the_given_one_unsandboxed() {
    check_environment_is_exactly_the_given_one(SandboxMode::Off);
}

#[test]
fn environment_is_exactly_the_given_one_under_bubblewrap() {
    if bubblewrap_available("environment_is_exactly_the_given_one_under_bubblewrap") {
        check_environment_is_exactly_the_given_one(SandboxMode::Required);
    }
}

#[test]
fn unsandboxed_commands_run_in_the_workspace() {
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Off);
    let outcome = run_ok(&config, &spec("pwd -P; echo written > created.txt"));
    assert!(outcome.success(), "{outcome:?}");
    let workspace = fixture.workspace.path().canonicalize().unwrap();
    assert_eq!(output_text(&outcome), format!("{}\n", workspace.display()));
    assert_eq!(
        fs::read_to_string(workspace.join("created.txt")).unwrap(),
        "written\n"
    );
    assert_eq!(
        outcome.isolation,
        Isolation::Unsandboxed {
            reason: "sandbox = \"off\"".to_string()
        }
    );
    assert_eq!(outcome.isolation.to_string(), "none: sandbox = \"off\"");
}

#[test]
fn workspace_errors_are_errors_not_outcomes() {
    let fixture = Fixture::new();
    let mut config = fixture.config(SandboxMode::Off);
    config.workspace = fixture.workspace.path().join("missing");
    let error = run(&config, &spec("true"), &Cancel::new()).unwrap_err();
    assert!(
        matches!(error, SandboxError::WorkspaceMissing { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("missing"), "{error}");

    config.workspace = fixture.database();
    let error = run(&config, &spec("true"), &Cancel::new()).unwrap_err();
    assert!(
        matches!(error, SandboxError::WorkspaceNotDirectory { .. }),
        "{error:?}"
    );
}

#[test]
fn required_without_bubblewrap_is_an_error_naming_the_package() {
    let fixture = Fixture::new();
    let mut config = fixture.config(SandboxMode::Required);
    config.bwrap_path = Some(PathBuf::from("/nonexistent/bin/bwrap"));
    for error in [
        run(&config, &spec("true"), &Cancel::new()).unwrap_err(),
        probe(&config).unwrap_err(),
    ] {
        assert!(
            matches!(error, SandboxError::BwrapMissing { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        for expected in [
            "bubblewrap",
            "apt-get install bubblewrap",
            "best-effort",
            "/nonexistent/bin/bwrap",
        ] {
            assert!(message.contains(expected), "{message}");
        }
    }
}

#[test]
fn best_effort_without_bubblewrap_runs_unsandboxed_and_says_so() {
    let fixture = Fixture::new();
    let mut config = fixture.config(SandboxMode::BestEffort);
    config.bwrap_path = Some(PathBuf::from("/nonexistent/bin/bwrap"));
    let outcome = run_ok(&config, &spec("echo ran"));
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(output_text(&outcome), "ran\n");
    let Isolation::Unsandboxed { reason } = &outcome.isolation else {
        panic!("expected an unsandboxed run, got {}", outcome.isolation)
    };
    assert!(
        reason.contains("best-effort") && reason.contains("bubblewrap"),
        "{reason}"
    );
    assert_eq!(probe(&config).unwrap(), outcome.isolation);
    assert!(
        outcome
            .isolation
            .to_string()
            .starts_with("none: sandbox = \"best-effort\"")
    );
}

#[test]
fn a_bubblewrap_that_cannot_create_a_sandbox_is_refused_or_reported() {
    let fixture = Fixture::new();
    // Behaves like bubblewrap on a host that forbids user namespaces. Written by a child
    // process: a write descriptor open in this multi-threaded test process could be
    // inherited by a concurrent test's fork and make executing the script fail with ETXTBSY.
    let fake_bwrap = fixture.state.path().join("bwrap");
    let script = "#!/bin/sh\n\
         [ \"$1\" = --version ] && { echo bubblewrap 0.0.1; exit 0; }\n\
         echo 'bwrap: No permissions to creating new namespace' >&2; exit 1\n";
    let written = std::process::Command::new("/bin/sh")
        .args([
            "-c",
            "printf '%s' \"$1\" > \"$2\" && chmod 755 \"$2\"",
            "sh",
            script,
        ])
        .arg(&fake_bwrap)
        .status()
        .unwrap();
    assert!(written.success());

    let mut config = fixture.config(SandboxMode::Required);
    config.bwrap_path = Some(fake_bwrap.clone());
    let error = run(&config, &spec("true"), &Cancel::new()).unwrap_err();
    assert!(
        matches!(error, SandboxError::BwrapUnusable { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    for expected in [
        "No permissions to creating new namespace",
        "best-effort",
        "bubblewrap at",
    ] {
        assert!(message.contains(expected), "{message}");
    }

    config.mode = SandboxMode::BestEffort;
    let outcome = run_ok(&config, &spec("echo ran"));
    assert_eq!(output_text(&outcome), "ran\n");
    let reason = outcome.isolation.to_string();
    assert!(
        reason.starts_with("none: sandbox = \"best-effort\" and bubblewrap at")
            && reason.contains("No permissions to creating new namespace"),
        "{reason}"
    );
}

#[test]
fn bubblewrap_isolation_is_described() {
    if !bubblewrap_available("bubblewrap_isolation_is_described") {
        return;
    }
    let fixture = Fixture::new();
    let mut config = fixture.config(SandboxMode::BestEffort);
    config.hidden_paths.push(fixture.state.path().to_path_buf());
    let isolation = probe(&config).unwrap();
    let Isolation::Bubblewrap {
        version,
        hidden_paths,
        ..
    } = &isolation
    else {
        panic!("expected bubblewrap, got {isolation}")
    };
    // airlock.db and the state directory; the nonexistent path is skipped.
    assert_eq!(*hidden_paths, 2);
    assert_eq!(
        isolation.to_string(),
        format!(
            "bubblewrap {version}: no network, read-only root, writable: workspace, private /tmp; /run and 2 paths hidden"
        )
    );
    let outcome = run_ok(&config, &spec("true"));
    assert_eq!(outcome.isolation, isolation);
    eprintln!("`true` under bubblewrap took {:?}", outcome.duration);
}

#[test]
fn bubblewrap_confines_writes_to_the_workspace_and_a_private_tmp() {
    if !bubblewrap_available("bubblewrap_confines_writes_to_the_workspace_and_a_private_tmp") {
        return;
    }
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Required);
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_string());
    let marker = format!("airlock-sandbox-probe-{}", std::process::id());
    let outside = [
        PathBuf::from(&home).join(&marker),
        PathBuf::from("/var/tmp").join(&marker),
        fixture.state.path().join(&marker),
        PathBuf::from("/etc").join(&marker),
    ];
    let mut script = String::from("pwd -P; echo inside > inside.txt && echo workspace-written\n");
    for path in &outside {
        script += &format!("echo leaked > '{}' || echo blocked\n", path.display());
    }
    script += &format!("echo private > /tmp/{marker} && cat /tmp/{marker}\n");
    script += &format!("mkdir -p /tmp/{marker}-dir && echo tmp-dir-ok\n");
    let outcome = run_ok(&config, &spec(&script));

    let text = output_text(&outcome);
    let workspace = fixture.workspace.path().canonicalize().unwrap();
    assert!(
        text.starts_with(&format!("{}\nworkspace-written\n", workspace.display())),
        "{text}"
    );
    assert_eq!(
        fs::read_to_string(workspace.join("inside.txt")).unwrap(),
        "inside\n"
    );
    assert_eq!(text.matches("blocked\n").count(), outside.len(), "{text}");
    assert!(text.contains("Read-only file system"), "{text}");
    for path in &outside {
        assert!(
            !path.exists(),
            "{} was written from inside the sandbox",
            path.display()
        );
    }
    assert!(text.contains("private\ntmp-dir-ok\n"), "{text}");
    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "the sandbox's /tmp leaked to the host"
    );
    assert!(
        !Path::new("/tmp").join(format!("{marker}-dir")).exists(),
        "the sandbox's /tmp leaked to the host"
    );
}

#[test]
fn bubblewrap_hides_the_hidden_paths() {
    if !bubblewrap_available("bubblewrap_hides_the_hidden_paths") {
        return;
    }
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Required);
    let database = fixture.database();
    let command = format!("cat '{}'; echo \"cat exited $?\"", database.display());

    // Control: unsandboxed, the same command reads the database.
    let outcome = run_ok(
        &SandboxConfig {
            mode: SandboxMode::Off,
            ..config.clone()
        },
        &spec(&command),
    );
    assert!(
        output_text(&outcome).contains(HIDDEN_DATABASE_CONTENT),
        "{}",
        output_text(&outcome)
    );

    let outcome = run_ok(&config, &spec(&command));
    let text = output_text(&outcome);
    assert!(!text.contains(HIDDEN_DATABASE_CONTENT), "{text}");
    assert!(
        text.contains("Permission denied") && text.contains("cat exited 1"),
        "{text}"
    );
    assert_eq!(
        fs::read_to_string(&database).unwrap(),
        HIDDEN_DATABASE_CONTENT,
        "the host file is untouched"
    );

    // Running as root must not let the command undo the hiding: it holds no capabilities.
    let unmount_then_read = format!(
        "umount '{0}' || echo unmount-refused; cat '{0}'",
        database.display()
    );
    let outcome = run_ok(&config, &spec(&unmount_then_read));
    let text = output_text(&outcome);
    assert!(text.contains("unmount-refused"), "{text}");
    assert!(!text.contains(HIDDEN_DATABASE_CONTENT), "{text}");
}

#[test]
fn bubblewrap_hides_a_state_directory_that_contains_the_workspace() {
    if !bubblewrap_available("bubblewrap_hides_a_state_directory_that_contains_the_workspace") {
        return;
    }
    let fixture = Fixture::new();
    let workspace = fixture.state.path().join("workspaces").join("change-1");
    fs::create_dir_all(&workspace).unwrap();
    fs::write(workspace.join("README"), "in the workspace\n").unwrap();
    // A hidden path inside the workspace covers its part of the workspace.
    fs::write(workspace.join("secret.env"), HIDDEN_DATABASE_CONTENT).unwrap();
    let config = SandboxConfig {
        workspace: workspace.clone(),
        hidden_paths: vec![
            fixture.state.path().to_path_buf(),
            workspace.join("secret.env"),
        ],
        ..fixture.config(SandboxMode::Required)
    };
    let state = fixture.state.path().display().to_string();
    let script = format!(
        "cat README; echo written > out.txt && echo workspace-written\n\
         ls -A '{state}'; ls -A '{state}/workspaces'\n\
         cat '{state}/airlock.db' || echo database-unreadable\n\
         echo leaked > '{state}/new' || echo state-blocked\n         cat secret.env || echo workspace-secret-unreadable\n"
    );
    let outcome = run_ok(&config, &spec(&script));
    let text = output_text(&outcome);
    assert_eq!(
        text.lines()
            .filter(|line| !["No such file", "Read-only", "Permission denied"]
                .iter()
                .any(|error| line.contains(error)))
            .collect::<Vec<_>>(),
        [
            "in the workspace",
            "workspace-written",
            "workspaces",
            "change-1",
            "database-unreadable",
            "state-blocked",
            "workspace-secret-unreadable",
        ],
        "{text}"
    );
    assert!(!text.contains(HIDDEN_DATABASE_CONTENT), "{text}");
    assert_eq!(
        fs::read_to_string(workspace.join("out.txt")).unwrap(),
        "written\n"
    );
    assert!(!fixture.state.path().join("new").exists());

    let hiding_the_workspace = SandboxConfig {
        hidden_paths: vec![workspace.clone()],
        ..config
    };
    let error = run(&hiding_the_workspace, &spec("true"), &Cancel::new()).unwrap_err();
    assert!(
        matches!(error, SandboxError::WorkspaceHidden { .. }),
        "{error:?}"
    );
}

/// Tries a TCP connection with bash's /dev/tcp and prints the result.
fn connect_command(port: u16) -> String {
    format!(
        "/bin/bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' 2>&1 && echo connected || echo connect-failed"
    )
}

#[test]
fn bubblewrap_has_no_network() {
    if !bubblewrap_available("bubblewrap_has_no_network") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Required);

    // Control: without the sandbox the same command reaches the listener, so the failure
    // below is the sandbox's doing.
    let outcome = run_ok(
        &SandboxConfig {
            mode: SandboxMode::Off,
            ..config.clone()
        },
        &spec(&connect_command(port)),
    );
    assert_eq!(output_text(&outcome), "connected\n");

    let outcome = run_ok(&config, &spec(&connect_command(port)));
    let text = output_text(&outcome);
    assert!(
        text.ends_with("connect-failed\n") && text.contains("Connection refused"),
        "{text}"
    );

    let outcome = run_ok(
        &config,
        &spec("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '"),
    );
    assert_eq!(
        output_text(&outcome),
        "lo\n",
        "only a private loopback exists"
    );

    // Integration tests against staging keep the host's network, and nothing else.
    let sharing = SandboxConfig {
        share_network: true,
        ..config.clone()
    };
    let outcome = run_ok(&sharing, &spec(&connect_command(port)));
    assert_eq!(output_text(&outcome), "connected\n");
    let outcome = run_ok(&sharing, &spec("touch /outside 2>&1 || echo read-only"));
    assert!(
        output_text(&outcome).ends_with("read-only\n"),
        "{}",
        output_text(&outcome)
    );
}

#[test]
fn bubblewrap_hides_host_sockets_under_run() {
    if !bubblewrap_available("bubblewrap_hides_host_sockets_under_run") {
        return;
    }
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Required);
    let outcome = run_ok(
        &config,
        &spec("ls -A /run | wc -l; touch /run/x || echo run-blocked"),
    );
    let text = output_text(&outcome);
    assert!(
        text.starts_with("0\n") && text.ends_with("run-blocked\n"),
        "{text}"
    );
}

#[test]
fn bubblewrap_timeout_and_cancel_kill_everything_in_the_sandbox() {
    if !bubblewrap_available("bubblewrap_timeout_and_cancel_kill_everything_in_the_sandbox") {
        return;
    }
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Required);
    // PIDs inside the sandbox belong to its own namespace, so survivors are found by a
    // unique argument instead.
    let marker = format!("30.{}1", std::process::id());
    let command = format!("sleep {marker} & sleep {marker}");

    let started = Instant::now();
    let outcome = run_ok(
        &config,
        &CommandSpec {
            timeout: Duration::from_millis(300),
            ..spec(&command)
        },
    );
    assert!(outcome.timed_out && !outcome.success(), "{outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        eventually(|| processes_with_argument(&marker).is_empty()),
        "{:?}",
        processes_with_argument(&marker)
    );

    let cancel = Cancel::new();
    let canceller = {
        let cancel = cancel.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            cancel.cancel();
        })
    };
    let started = Instant::now();
    let outcome = run(&config, &spec(&command), &cancel).unwrap();
    canceller.join().unwrap();
    assert!(outcome.cancelled && !outcome.success(), "{outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        eventually(|| processes_with_argument(&marker).is_empty()),
        "{:?}",
        processes_with_argument(&marker)
    );

    // A background job left behind by a command that exited dies with the sandbox.
    let started = Instant::now();
    let outcome = run_ok(&config, &spec(&format!("sleep {marker} & echo done")));
    assert!(
        outcome.success() && started.elapsed() < Duration::from_secs(2),
        "{outcome:?}"
    );
    assert!(
        eventually(|| processes_with_argument(&marker).is_empty()),
        "{:?}",
        processes_with_argument(&marker)
    );
}

#[test]
fn bubblewrap_reports_exit_codes_and_signals_as_exit_codes() {
    if !bubblewrap_available("bubblewrap_reports_exit_codes_and_signals_as_exit_codes") {
        return;
    }
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Required);
    let check = |command: &str, exit_code: i32| {
        let outcome = run_ok(&config, &spec(command));
        assert_eq!(
            (outcome.exit_code, outcome.signal),
            (Some(exit_code), None),
            "{command}"
        );
        assert_eq!(outcome.success(), exit_code == 0, "{command}");
    };
    check("true", 0);
    check("exit 3", 3);
    check("kill -9 $$", 128 + libc::SIGKILL);
    check("echo out; echo err >&2; exit 7", 7);
    let outcome = run_ok(&config, &spec("echo out; echo err >&2; echo out2"));
    assert_eq!(output_text(&outcome), "out\nerr\nout2\n");
}

/// A prepared command gets its late variables, exactly the given environment besides, and
/// sees what was written to the workspace after it was prepared (the workspace is bound,
/// not copied).
fn check_prepared_command(mode: SandboxMode) {
    let fixture = Fixture::new();
    let config = fixture.config(mode);
    let prepared = airlock_sandbox::prepare(
        &config,
        &spec("printf 'id: %s\\n' \"$AIRLOCK_CHANGE_ID\"; cat written-later.txt; env"),
        &["AIRLOCK_CHANGE_ID"],
    )
    .unwrap();
    assert_eq!(
        prepared.workspace(),
        fixture.workspace.path().canonicalize().unwrap()
    );
    fs::write(
        fixture.workspace.path().join("written-later.txt"),
        "the change\n",
    )
    .unwrap();
    // The timeout counts from `run`, not from `prepare`.
    thread::sleep(Duration::from_millis(300));
    let outcome = prepared
        .run(&[("AIRLOCK_CHANGE_ID", "01J9 with spaces")], &Cancel::new())
        .unwrap();
    let text = output_text(&outcome);
    assert!(outcome.success(), "{mode}: {outcome:?}");
    assert_eq!(
        outcome.isolation.is_sandboxed(),
        mode == SandboxMode::Required
    );
    assert!(outcome.duration < Duration::from_millis(300), "{outcome:?}");
    assert!(
        text.starts_with("id: 01J9 with spaces\nthe change\n"),
        "{text}"
    );
    let expected: BTreeSet<String> = ["PATH", "LANG", "TMPDIR", "AIRLOCK_CHANGE_ID"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(environment_names(&outcome), expected, "{mode}: {text}");
}

#[test]
fn a_prepared_command_runs_later_with_its_late_variables_unsandboxed() {
    check_prepared_command(SandboxMode::Off);
}

#[test]
fn a_prepared_command_runs_later_with_its_late_variables_under_bubblewrap() {
    if bubblewrap_available(
        "a_prepared_command_runs_later_with_its_late_variables_under_bubblewrap",
    ) {
        check_prepared_command(SandboxMode::Required);
        // The prepared sandbox is the same sandbox: the database stays hidden and nothing
        // outside the workspace is writable.
        let fixture = Fixture::new();
        let database = fixture.database();
        let command = format!(
            "cat {} && echo READ; touch {}/escaped && echo WROTE; exit 0",
            database.display(),
            fixture.state.path().display()
        );
        let prepared = airlock_sandbox::prepare(
            &fixture.config(SandboxMode::Required),
            &spec(&command),
            &["AIRLOCK_CHANGE_ID"],
        )
        .unwrap();
        let outcome = prepared
            .run(&[("AIRLOCK_CHANGE_ID", "x")], &Cancel::new())
            .unwrap();
        let text = output_text(&outcome);
        assert!(
            !text.contains("READ") && !text.contains(HIDDEN_DATABASE_CONTENT),
            "{text}"
        );
        assert!(!text.contains("WROTE"), "{text}");
        assert!(!fixture.state.path().join("escaped").exists());
    }
}

#[test]
fn late_variables_are_checked_and_a_prepared_sandbox_never_run_is_killed() {
    if bubblewrap_available("late_variables_are_checked_and_a_prepared_sandbox_never_run_is_killed")
    {
        check_late_variables_and_dropping(SandboxMode::Required);
    }
}

#[test]
fn late_variables_are_checked_and_a_prepared_command_never_run_is_killed_unsandboxed() {
    check_late_variables_and_dropping(SandboxMode::Off);
}

/// Bad late variables are refused, and a prepared command that is refused or dropped
/// leaves no process behind.
fn check_late_variables_and_dropping(mode: SandboxMode) {
    let fixture = Fixture::new();
    let config = fixture.config(mode);
    for bad in ["1X", "A-B", "", "PATH"] {
        let error = airlock_sandbox::prepare(&config, &spec("true"), &[bad]).unwrap_err();
        assert!(
            matches!(error, SandboxError::LateVariable { ref name, .. } if name == bad),
            "{bad:?}: {error}"
        );
    }
    let given: [&[(&str, &str)]; 4] = [
        &[],
        &[("ID", "a\nb")],
        &[("ID", "a"), ("ID", "b")],
        &[("ID", "a"), ("OTHER", "b")],
    ];
    for values in given {
        let marker = format!("airlock-prepared-{}", std::process::id());
        let prepared =
            airlock_sandbox::prepare(&config, &spec(&format!("echo {marker}")), &["ID"]).unwrap();
        let error = prepared.run(values, &Cancel::new()).unwrap_err();
        assert!(
            matches!(error, SandboxError::LateVariable { .. }),
            "{values:?}: {error}"
        );
        // The refused command never ran, and its sandbox is gone.
        assert!(
            eventually(|| processes_with_argument(&marker).is_empty()),
            "{:?}",
            processes_with_argument(&marker)
        );
    }

    let marker = format!("airlock-dropped-{}", std::process::id());
    let prepared = airlock_sandbox::prepare(&config, &spec(&marker), &["ID"]).unwrap();
    assert!(
        eventually(|| !processes_with_argument(&marker).is_empty()),
        "the prepared sandbox waits"
    );
    drop(prepared);
    assert!(
        eventually(|| processes_with_argument(&marker).is_empty()),
        "{:?}",
        processes_with_argument(&marker)
    );
}

/// Commands are spawned by one thread; started from a normal-priority thread, it keeps
/// starting them at that priority even when a lowered-priority background thread asks
/// (the server's standby prepares its check from one).
#[test]
fn commands_keep_the_priority_of_the_thread_that_started_the_spawner() {
    airlock_sandbox::start_spawner();
    // SAFETY: getpriority(2) of the calling thread.
    let starter = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let fixture = Fixture::new();
    let config = fixture.config(SandboxMode::Off);
    let niceness = std::thread::spawn(move || {
        // SAFETY: setpriority(2) on the calling thread; raising needs no privilege.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, starter + 10) };
        // Field 19 of stat is the niceness (the shell's name holds no space).
        let outcome = run_ok(&config, &spec("cut -d ' ' -f 19 /proc/$$/stat"));
        output_text(&outcome).trim().to_owned()
    })
    .join()
    .unwrap();
    assert_eq!(niceness, starter.to_string());
}
