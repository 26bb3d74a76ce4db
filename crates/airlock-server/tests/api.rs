//! The service end to end: a real git repository in a temp dir, a real SQLite file,
//! the real server on 127.0.0.1 port 0, real check commands under bubblewrap.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use airlock_core::config::Config;
use airlock_core::event::Actor;
use airlock_core::ids::Role;
use airlock_server::{ChangeView, Running, ServiceOptions};
use airlock_store::{SqliteStore, Store};
use serde_json::{Value, json};

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
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
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Fails loudly under CI when bubblewrap is missing; elsewhere the caller skips.
fn bwrap_available() -> bool {
    let found = Command::new("bwrap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "bubblewrap is required under CI: install the Debian package `bubblewrap`"
        );
        eprintln!("skipping: bwrap not found (install the Debian package `bubblewrap`)");
    }
    found
}

struct TestServer {
    _dir: tempfile::TempDir,
    root: PathBuf,
    running: Option<Running>,
    url: String,
    token: String,
    http: ureq::Agent,
    clock: std::sync::Arc<dyn airlock_server::Clock>,
}

const BASE_FILES: &[(&str, &str)] = &[
    ("README.md", "# sample\n\nline three\n"),
    (
        "src/app.py",
        "def total(a, b):\n    return a + b\n\nprint(total(1, 2))\n",
    ),
    ("src/util.py", "X = 1\nX = 1\n"),
    ("docs/guide.md", "guide\n"),
];

impl TestServer {
    async fn start(config_text: &str) -> TestServer {
        Self::start_with(config_text, None).await
    }

    async fn start_with(config_text: &str, bwrap_path: Option<PathBuf>) -> TestServer {
        Self::start_custom(
            config_text,
            bwrap_path,
            None,
            std::sync::Arc::new(airlock_server::SystemClock),
        )
        .await
    }

    /// With a review policy written to `.airlock/policy.rego` and a clock of the test's.
    async fn start_custom(
        config_text: &str,
        bwrap_path: Option<PathBuf>,
        policy: Option<&str>,
        clock: std::sync::Arc<dyn airlock_server::Clock>,
    ) -> TestServer {
        // Outside /tmp: checks get a private /tmp, which would hide a repository under
        // it and make the isolation tests pass for the wrong reason.
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir_all(&root).unwrap();
        git(&root, &["init", "-q"]);
        for (path, content) in BASE_FILES {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
        std::fs::write(root.join("airlock.toml"), config_text).unwrap();
        std::fs::write(root.join(".gitignore"), ".airlock/\n").unwrap();
        git(&root, &["add", "-A"]);
        git(&root, &["commit", "-q", "-m", "base"]);
        let mut server = TestServer {
            _dir: dir,
            root,
            running: None,
            url: String::new(),
            token: String::new(),
            http: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into(),
            clock,
        };
        if let Some(policy) = policy {
            std::fs::create_dir_all(server.root.join(".airlock")).unwrap();
            std::fs::write(server.root.join(".airlock/policy.rego"), policy).unwrap();
        }
        server.boot(config_text, bwrap_path).await;
        server.token = server.issue("agent-7", Role::Agent).await;
        server
    }

    fn options(&self, config_text: &str, bwrap_path: Option<PathBuf>) -> ServiceOptions {
        ServiceOptions {
            repo_root: self.root.clone(),
            state_dir: self.root.join(".airlock"),
            config: Config::parse(config_text, "airlock.toml").unwrap(),
            bwrap_path,
            clock: self.clock.clone(),
        }
    }

    async fn store(&self) -> SqliteStore {
        std::fs::create_dir_all(self.root.join(".airlock")).unwrap();
        SqliteStore::open(&self.root.join(".airlock/airlock.db"))
            .await
            .unwrap()
    }

    async fn boot(&mut self, config_text: &str, bwrap_path: Option<PathBuf>) {
        self.boot_configured(|_| config_text.to_owned(), bwrap_path)
            .await;
    }

    /// Boots with a configuration that may name the server's own port.
    async fn boot_configured(
        &mut self,
        config_for_port: impl Fn(u16) -> String,
        bwrap_path: Option<PathBuf>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config_text = &config_for_port(listener.local_addr().unwrap().port());
        let running = airlock_server::start(
            self.options(config_text, bwrap_path),
            self.store().await,
            listener,
        )
        .await
        .unwrap();
        self.url = format!("http://{}", running.addr);
        self.running = Some(running);
    }

    async fn issue(&self, name: &str, role: Role) -> String {
        let store = self.store().await;
        airlock_server::tokens::issue(&store, name, role, None, &[], Actor::system("test"), 0)
            .await
            .unwrap()
            .secret
    }

    /// A token with an agent's owner or a human's review groups.
    async fn issue_as(
        &self,
        name: &str,
        role: Role,
        owner: Option<&str>,
        groups: &[&str],
    ) -> String {
        let store = self.store().await;
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        airlock_server::tokens::issue(&store, name, role, owner, &groups, Actor::system("test"), 0)
            .await
            .unwrap()
            .secret
    }

    /// The kinds of a change's events, in order.
    async fn event_kinds(&self, id: &str) -> Vec<String> {
        let (status, events) = self
            .request(
                "GET",
                &format!("/v1/changes/{id}/events"),
                Some(&self.token.clone()),
                None,
            )
            .await;
        assert_eq!(status, 200, "{events}");
        events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits until the change is in `state` (moved by a timer or another request).
    async fn wait_for_state(&self, id: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, view) = self
                .request(
                    "GET",
                    &format!("/v1/changes/{id}"),
                    Some(&self.token.clone()),
                    None,
                )
                .await;
            if view["state"] == state {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never reached {state}: {view}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the change has an event of `kind`.
    async fn wait_for_event(&self, id: &str, kind: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let kinds = self.event_kinds(id).await;
            if kinds.iter().any(|k| k == kind) {
                return kinds;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never got {kind}: {kinds:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    /// Sends a request from a blocking thread (the client is synchronous).
    async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let http = self.http.clone();
        let url = format!("{}{path}", self.url);
        let method = method.to_owned();
        let token = token.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let mut response = match (method.as_str(), body) {
                ("GET" | "DELETE", _) => {
                    let mut request = if method == "GET" {
                        http.get(&url)
                    } else {
                        http.delete(&url)
                    };
                    if let Some(token) = &token {
                        request = request.header("Authorization", format!("Bearer {token}"));
                    }
                    request.call().unwrap()
                }
                (_, body) => {
                    let mut request = http.post(&url);
                    if let Some(token) = &token {
                        request = request.header("Authorization", format!("Bearer {token}"));
                    }
                    request.send_json(body.unwrap_or(Value::Null)).unwrap()
                }
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let bytes = response
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_vec()
                .unwrap();
            let mut body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            // The one header the tests read travels with the body.
            if let (Some(seconds), Some(object)) = (retry_after, body.as_object_mut()) {
                object.insert("retry_after_header".into(), seconds.into());
            }
            (status, body)
        })
        .await
        .unwrap()
    }

    async fn propose(&self, body: Value) -> (u16, Value) {
        self.request("POST", "/v1/changes", Some(&self.token.clone()), Some(body))
            .await
    }

    /// Proposes and waits for the Level 1 verdict.
    async fn decide(&self, body: Value) -> ChangeView {
        let (status, created) = self.propose(body).await;
        assert_eq!(status, 201, "{created}");
        self.wait(created["id"].as_str().unwrap()).await
    }

    async fn wait(&self, id: &str) -> ChangeView {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, view) = self
                .request(
                    "GET",
                    &format!("/v1/changes/{id}?wait=5"),
                    Some(&self.token.clone()),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{view}");
            let view: ChangeView = serde_json::from_value(view).unwrap();
            if !view.state.needs_worker() {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "change {id} stuck in {}",
                view.state
            );
        }
    }

    /// Asserts an intake refusal and that it wrote nothing: no change, no event, and
    /// the user's repository untouched.
    async fn refused(&self, body: Value, status: u16, code: &str, message_part: &str) {
        let head_before = git(&self.root, &["rev-parse", "HEAD"]);
        let (actual_status, answer) = self.propose(body).await;
        assert_eq!(
            (actual_status, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(message_part),
            "message {message:?} lacks {message_part:?}"
        );
        let (_, list) = self
            .request("GET", "/v1/changes", Some(&self.token.clone()), None)
            .await;
        assert_eq!(
            list.as_array().unwrap().len(),
            0,
            "a refused change was stored: {list}"
        );
        let store = self.store().await;
        let change_events: Vec<_> = store
            .events(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.change_id.is_some())
            .collect();
        assert!(
            change_events.is_empty(),
            "a refused change left events: {change_events:?}"
        );
        assert_eq!(git(&self.root, &["status", "--porcelain"]), "");
        assert_eq!(git(&self.root, &["rev-parse", "HEAD"]), head_before);
    }
}

const NO_CHECKS: &str = "[checks]\nsandbox = 'off'\n";

fn diff_body(diff: &str) -> Value {
    json!({ "title": "t", "diff": diff })
}

#[tokio::test]
async fn health_and_authentication() {
    let mut server = TestServer::start(NO_CHECKS).await;
    assert_eq!(
        server.request("GET", "/healthz", None, None).await,
        (200, json!({"status": "ok"}))
    );

    let (status, body) = server.request("GET", "/v1/changes", None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let forged = format!("alk_{}", "0".repeat(64));
    let (status, _) = server
        .request("GET", "/v1/changes", Some(&forged), None)
        .await;
    assert_eq!(status, 401);
    let (status, _) = server
        .request("POST", "/v1/changes", Some("garbage"), Some(diff_body("x")))
        .await;
    assert_eq!(status, 401);

    // A reviewer may read but not propose.
    let reviewer = server.issue("rita", Role::Reviewer).await;
    let (status, body) = server
        .request("POST", "/v1/changes", Some(&reviewer), Some(diff_body("x")))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    // A revoked token authenticates nobody.
    let store = server.store().await;
    let tokens = store.list_tokens().await.unwrap();
    let agent = tokens.iter().find(|t| t.name == "agent-7").unwrap();
    let event = airlock_core::event::NewEvent {
        change_id: None,
        at_ms: 1,
        actor: Actor::system("test"),
        kind: airlock_core::event::EventKind::TokenRevoked,
        data: json!({}),
    };
    assert!(store.revoke_token(&agent.id, &event).await.unwrap());
    let (status, _) = server
        .request("GET", "/v1/changes", Some(&server.token.clone()), None)
        .await;
    assert_eq!(status, 401);

    let (status, body) = server
        .request("GET", "/v1/nothing", Some(&reviewer), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, body) = server
        .request("GET", "/v1/changes/chg_nope", Some(&reviewer), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_change_id"))
    );
    let (status, body) = server
        .request("GET", "/v1/changes?state=bogus", Some(&reviewer), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_state"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("checks_passed")
    );
    server.stop().await;
}

#[tokio::test]
async fn the_agent_comes_from_the_token_never_the_body() {
    let mut server = TestServer::start(NO_CHECKS).await;
    let diff =
        "--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,3 @@\n # sample\n \n-line three\n+line 3\n";
    let (status, body) = server
        .propose(json!({ "title": "t", "diff": diff, "agent": "somebody-else" }))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("agent"));

    let view = server.decide(diff_body(diff)).await;
    assert_eq!(view.agent.name, "agent-7");
    assert_eq!(view.state.as_str(), "awaiting_review");
    server.stop().await;
}

#[tokio::test]
async fn the_three_forms_reach_a_verdict_and_events_carry_file_hashes() {
    let config = "[checks]\nsandbox = 'off'\ncommands = [{ name = 'verify', run = 'test -x tools/run.sh && test ! -e docs/guide.md && test -f guide/GUIDE.md && grep -q total src/app.py' }]\n";
    let mut server = TestServer::start(config).await;

    // Diff form: a new executable file, a rename, and a modification.
    let diff = "diff --git a/tools/run.sh b/tools/run.sh\nnew file mode 100755\n--- /dev/null\n+++ b/tools/run.sh\n@@ -0,0 +1 @@\n+echo hi\n\
diff --git a/docs/guide.md b/guide/GUIDE.md\nsimilarity index 100%\nrename from docs/guide.md\nrename to guide/GUIDE.md\n\
diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,3 @@\n # sample\n \n-line three\n+line 3\n";
    let view = server.decide(diff_body(diff)).await;
    assert_eq!(view.state.as_str(), "awaiting_review", "{:?}", view.verdict);
    assert_eq!(view.files.len(), 3);

    let (status, events) = server
        .request(
            "GET",
            &format!("/v1/changes/{}/events", view.id),
            Some(&server.token.clone()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "change.proposed",
            "checks.started",
            "checks.step_finished", // scan
            "checks.step_finished", // verify
            "checks.passed",
            "review.requested"
        ]
    );
    for event in events.as_array().unwrap() {
        let files = event["data"]["files"].as_array().unwrap();
        assert_eq!(files.len(), 3, "{event}");
        let readme = files.iter().find(|f| f["path"] == "README.md").unwrap();
        assert_eq!(
            readme["old_sha256"],
            airlock_core::intake::sha256_hex(b"# sample\n\nline three\n")
        );
        assert_eq!(
            readme["new_sha256"],
            airlock_core::intake::sha256_hex(b"# sample\n\nline 3\n")
        );
        assert_eq!(
            event["actor"]["name"],
            match event["kind"].as_str().unwrap() {
                "change.proposed" => "agent-7",
                "review.requested" => "policy",
                _ => "worker",
            }
        );
    }

    // A mode change and a deletion, in git's own form.
    let diff = "diff --git a/README.md b/README.md\nold mode 100644\nnew mode 100755\n\
diff --git a/src/util.py b/src/util.py\ndeleted file mode 100644\n--- a/src/util.py\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-X = 1\n-X = 1\n";
    let config_mode = "[checks]\nsandbox = 'off'\ncommands = [{ name = 'verify', run = 'test -x README.md && test ! -e src/util.py' }]\n";
    server.stop().await;
    server.boot(config_mode, None).await;
    let view = server.decide(diff_body(diff)).await;
    assert_eq!(view.state.as_str(), "awaiting_review", "{:?}", view.verdict);
    server.stop().await;
    server.boot(config, None).await;

    // Edits form: replace, create and delete.
    let edits = json!({ "title": "edits", "edits": [
        { "op": "replace", "path": "src/app.py", "old_text": "return a + b", "new_text": "return a + b  # total" },
        { "op": "create", "path": "tools/run.sh", "content": "echo hi\n" },
        { "op": "delete", "path": "docs/guide.md" },
        { "op": "create", "path": "guide/GUIDE.md", "content": "guide\n" },
    ]});
    // tools/run.sh is created without the executable bit by an edit: the check says so.
    let view = server.decide(edits).await;
    assert_eq!(view.state.as_str(), "rejected");
    assert_eq!(view.files.len(), 4);

    // Ref form: a branch with one commit on top of main.
    git(&server.root, &["checkout", "-q", "-b", "agent/work"]);
    std::fs::create_dir_all(server.root.join("tools")).unwrap();
    std::fs::write(server.root.join("tools/run.sh"), "echo hi\n").unwrap();
    std::fs::set_permissions(
        server.root.join("tools/run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir_all(server.root.join("guide")).unwrap();
    git(&server.root, &["mv", "docs/guide.md", "guide/GUIDE.md"]);
    git(&server.root, &["add", "-A"]);
    git(&server.root, &["commit", "-q", "-m", "agent work"]);
    git(&server.root, &["checkout", "-q", "main"]);
    let view = server
        .decide(json!({ "title": "from a branch", "ref": "agent/work" }))
        .await;
    assert_eq!(view.state.as_str(), "awaiting_review", "{:?}", view.verdict);
    assert!(matches!(
        view.source,
        airlock_core::change::SourceForm::Ref { .. }
    ));
    server.stop().await;
}

#[tokio::test]
async fn bad_inputs_are_refused_with_a_reason_and_write_nothing() {
    let config = "[checks]\nsandbox = 'off'\n[limits]\nmax_change_bytes = 2048\nmax_files = 3\n";
    let mut server = TestServer::start(config).await;
    let modify = |path: &str| format!("--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-x\n+y\n");
    let create = |path: &str| {
        format!(
            "diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+owned\n"
        )
    };

    // Paths that escape the repository.
    server
        .refused(
            diff_body(&create("../outside.txt")),
            422,
            "invalid_path",
            "escape",
        )
        .await;
    server
        .refused(
            diff_body(&create("src/../../outside.txt")),
            422,
            "invalid_path",
            "escape",
        )
        .await;
    server
        .refused(
            diff_body(&create("/etc/cron.d/evil")),
            422,
            "invalid_path",
            "absolute",
        )
        .await;
    server.refused(json!({ "title": "t", "edits": [{ "op": "create", "path": "/etc/cron.d/evil", "content": "x" }] }), 422, "invalid_path", "absolute").await;
    // Through a symlink in the base tree (etc-link -> /etc).
    server
        .refused(
            diff_body(&create("etc-link/cron.d/evil")),
            422,
            "path_through_symlink",
            "symlink",
        )
        .await;
    // Anything under .git/, in any case.
    server
        .refused(
            diff_body(&create(".git/hooks/pre-commit")),
            422,
            "path_in_git_dir",
            ".git",
        )
        .await;
    server
        .refused(
            diff_body(&create("src/.GIT/config")),
            422,
            "path_in_git_dir",
            ".git",
        )
        .await;
    // Submodule changes.
    let submodule = "diff --git a/vendor/lib b/vendor/lib\nnew file mode 160000\nindex 0000000..1234567\n--- /dev/null\n+++ b/vendor/lib\n@@ -0,0 +1 @@\n+Subproject commit 1234567890123456789012345678901234567890\n";
    server
        .refused(diff_body(submodule), 422, "submodule_change", "submodule")
        .await;
    // New symlinks pointing outside the repository.
    let symlink = |target: &str| {
        format!(
            "diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+{target}\n\\ No newline at end of file\n"
        )
    };
    server
        .refused(
            diff_body(&symlink("/etc/shadow")),
            422,
            "symlink_escapes_repository",
            "absolute",
        )
        .await;
    server
        .refused(
            diff_body(&symlink("../../etc/shadow")),
            422,
            "symlink_escapes_repository",
            "outside",
        )
        .await;
    server
        .refused(
            diff_body(&symlink(".git/config")),
            422,
            "symlink_escapes_repository",
            ".git",
        )
        .await;
    // Binary patches (not allowed by default).
    let binary = "diff --git a/logo.png b/logo.png\nnew file mode 100644\nindex 0000000..e69de29\nBinary files /dev/null and b/logo.png differ\n";
    server
        .refused(diff_body(binary), 422, "binary_not_allowed", "allow_binary")
        .await;
    // Malformed diffs.
    server
        .refused(
            diff_body("this is not a diff\n"),
            422,
            "malformed_diff",
            "diff",
        )
        .await;
    server
        .refused(
            diff_body("--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,3 @@\n # sample\n"),
            422,
            "malformed_diff",
            "",
        )
        .await;
    // Edits whose old_text is absent or not unique.
    let edit = |old: &str| json!({ "title": "t", "edits": [{ "op": "replace", "path": "src/util.py", "old_text": old, "new_text": "Y = 2\n" }] });
    server
        .refused(edit("Z = 3\n"), 422, "edit_does_not_match", "not found")
        .await;
    server
        .refused(
            edit("X = 1\n"),
            422,
            "edit_does_not_match",
            "more than once",
        )
        .await;
    // Patches that do not apply to the base commit.
    server
        .refused(
            diff_body(&modify("README.md")),
            409,
            "patch_does_not_apply",
            "README.md",
        )
        .await;
    server
        .refused(
            diff_body(&modify("missing.txt")),
            409,
            "patch_does_not_apply",
            "does not exist",
        )
        .await;
    server
        .refused(
            diff_body(&create("README.md")),
            409,
            "patch_does_not_apply",
            "already exists",
        )
        .await;
    // NUL bytes or invalid UTF-8 in paths (git quotes them as octal escapes).
    server
        .refused(
            diff_body(
                &create("\"a\\000b\"")
                    .replace("a/\"a", "\"a/a")
                    .replace("b/\"a", "\"b/a"),
            ),
            422,
            "malformed_diff",
            "NUL",
        )
        .await;
    server
        .refused(
            diff_body(
                &create("\"\\377x\"")
                    .replace("a/\"\\377", "\"a/\\377")
                    .replace("b/\"\\377", "\"b/\\377"),
            ),
            422,
            "malformed_diff",
            "UTF-8",
        )
        .await;
    server.refused(json!({ "title": "t", "edits": [{ "op": "create", "path": "a\u{0}b", "content": "x" }] }), 422, "invalid_path", "control character").await;
    // Sizes over the limits.
    let big = format!(
        "--- /dev/null\n+++ b/big.txt\n@@ -0,0 +1 @@\n+{}\n",
        "x".repeat(4096)
    );
    server
        .refused(diff_body(&big), 413, "change_too_large", "max_change_bytes")
        .await;
    let many: String = (0..4).map(|i| create(&format!("f{i}.txt"))).collect();
    server
        .refused(diff_body(&many), 422, "too_many_files", "max_files")
        .await;
    // Requests that are not proposals at all.
    server
        .refused(
            json!({ "title": "t" }),
            400,
            "invalid_request",
            "exactly one",
        )
        .await;
    server
        .refused(
            json!({ "title": "", "diff": create("a.txt") }),
            400,
            "invalid_title",
            "title",
        )
        .await;
    server
        .refused(
            json!({ "title": "t", "diff": create("a.txt"), "base": "--output=/tmp/x" }),
            422,
            "unknown_revision",
            "base",
        )
        .await;
    server
        .refused(
            json!({ "title": "t", "ref": "no-such-branch" }),
            422,
            "unknown_revision",
            "no-such-branch",
        )
        .await;
    server.stop().await;
}

#[tokio::test]
async fn checks_are_sandboxed_and_the_verdict_says_why_an_escape_failed() {
    if !bwrap_available() {
        return;
    }
    // Each check tries one escape; under bubblewrap each must fail. The same checks with
    // the sandbox off succeed (second half), which is what proves this test can fail.
    let probes = |port: u16, root: &Path, home: &str| {
        vec![
            (
                "connect",
                format!("bash -c 'echo hello > /dev/tcp/127.0.0.1/{port}'"),
            ),
            ("home", format!("touch '{home}/airlock-escape-{port}'")),
            (
                "outside",
                format!("touch '{}/escape-{port}'", root.display()),
            ),
            (
                "database",
                format!("cat '{}/.airlock/airlock.db' > /dev/null", root.display()),
            ),
        ]
    };
    let home = std::env::var("HOME").unwrap();
    for (sandbox, expect_pass) in [("required", false), ("off", true)] {
        let mut server = TestServer::start(&format!("[checks]\nsandbox = '{sandbox}'\n")).await;
        let root = server.root.clone();
        for index in 0..4 {
            server.stop().await;
            let config = |port: u16| {
                let (name, run) = probes(port, &root, &home).swap_remove(index);
                format!(
                    "[checks]\nsandbox = '{sandbox}'\ncommands = [{{ name = '{name}', run = \"{run}\" }}]\n"
                )
            };
            server.boot_configured(config, None).await;
            let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
            let (name, run) = probes(port, &root, &home).swap_remove(index);
            if !expect_pass {
                // The escape runs in the sandbox the standby built before the change
                // arrived: the isolation must be the same as a sandbox built for it.
                assert!(
                    standby_workspace(&run).await.is_some(),
                    "no standby sandbox for `{run}`"
                );
            }
            let view = server.decide(diff_body("--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,3 @@\n # sample\n \n-line three\n+line 3\n")).await;
            let verdict = view.verdict.clone().unwrap();
            let _ = std::fs::remove_file(format!("{home}/airlock-escape-{port}"));
            if expect_pass {
                assert_eq!(
                    view.state.as_str(),
                    "awaiting_review",
                    "{name} with sandbox off: {verdict:?}"
                );
            } else {
                assert_eq!(
                    view.state.as_str(),
                    "rejected",
                    "{name} escaped the sandbox: {verdict:?}"
                );
                assert_eq!(verdict.failed_step.as_deref(), Some(name));
                let isolation = verdict.isolation.as_deref().unwrap();
                assert!(
                    isolation.starts_with("bubblewrap") && isolation.ends_with(BUILT_IN_ADVANCE),
                    "{verdict:?}"
                );
                let excerpt = verdict.output_excerpt.unwrap();
                let why = [
                    "Connection refused",
                    "Network is unreachable",
                    "Read-only file system",
                    "No such file",
                    "Permission denied",
                ];
                assert!(why.iter().any(|w| excerpt.contains(w)), "{name}: {excerpt}");
            }
        }
        server.stop().await;
    }
}

/// What a step's isolation says when the standby built its sandbox.
const BUILT_IN_ADVANCE: &str = "sandbox built before the change arrived";

/// The workspace of the standby sandbox waiting to run `command`, once there is one
/// (waits up to 10 s, letting the server's tasks run).
async fn standby_workspace(command: &str) -> Option<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(arguments) = processes_with_argument(command)
            .into_iter()
            .find(|arguments| arguments[0].ends_with("bwrap"))
        {
            let chdir = arguments.iter().position(|a| a == "--chdir").unwrap();
            return Some(PathBuf::from(&arguments[chdir + 1]));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The arguments of each process that has `argument` as one of them.
fn processes_with_argument(argument: &str) -> Vec<Vec<String>> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|cmdline| {
            cmdline
                .split(|byte| *byte == 0)
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect::<Vec<String>>()
        })
        .filter(|arguments| arguments.iter().any(|a| a == argument))
        .collect()
}

#[tokio::test]
async fn a_standby_sandbox_serves_changes_on_the_tip_and_steps_aside_for_others() {
    if !bwrap_available() {
        return;
    }
    let marker = format!("standby-{}", std::process::id());
    let run = format!("echo {marker}; printf 'change %s\\n' \"$AIRLOCK_CHANGE_ID\"; cat added.txt");
    let config = format!(
        "[checks]\nsandbox = 'required'\ncommands = [{{ name = 'test', run = '''{run}''' }}]\n"
    );
    let mut server = TestServer::start(&config).await;
    let add = |content: &str| {
        diff_body(&format!(
            "--- /dev/null\n+++ b/added.txt\n@@ -0,0 +1 @@\n+{content}\n"
        ))
    };
    let first_base = git(&server.root, &["rev-parse", "HEAD"]).trim().to_owned();

    // On the tip: the standby's workspace and sandbox, which see the change's files and
    // receive its id when it starts.
    assert!(
        standby_workspace(&run).await.is_some(),
        "no standby sandbox"
    );
    let view = server.decide(add("on the tip")).await;
    assert_eq!(view.state.as_str(), "awaiting_review", "{:?}", view.steps);
    let step = &view.steps[1];
    assert!(step.isolation.ends_with(BUILT_IN_ADVANCE), "{step:?}");
    assert_eq!(
        step.output,
        format!("{marker}\nchange {}\non the tip\n", view.change.id),
        "{step:?}"
    );

    // The tip moves, and the standby follows it.
    std::fs::write(server.root.join("docs/guide.md"), "guide, second edition\n").unwrap();
    git(&server.root, &["commit", "-qam", "second"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let workspace = standby_workspace(&run).await.expect("a standby sandbox");
        let guide = std::fs::read_to_string(workspace.join("docs/guide.md")).unwrap_or_default();
        if guide == "guide, second edition\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the standby stays on the old tip"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A change on the old base releases the standby and gets a workspace and a sandbox of
    // its own, at its base.
    let mut body = add("on the old base");
    body["base"] = first_base.clone().into();
    let view = server.decide(body).await;
    assert_eq!(view.state.as_str(), "awaiting_review", "{:?}", view.steps);
    let step = &view.steps[1];
    assert!(step.isolation.starts_with("bubblewrap"), "{step:?}");
    assert!(!step.isolation.ends_with(BUILT_IN_ADVANCE), "{step:?}");
    assert_eq!(
        step.output,
        format!("{marker}\nchange {}\non the old base\n", view.change.id),
        "{step:?}"
    );
    assert_eq!(view.change.base_commit, first_base);

    // A new standby, on the new tip, serves the next change there.
    assert!(
        standby_workspace(&run).await.is_some(),
        "no standby sandbox"
    );
    let view = server.decide(add("on the new tip")).await;
    assert!(
        view.steps[1].isolation.ends_with(BUILT_IN_ADVANCE),
        "{:?}",
        view.steps
    );

    // Shutdown leaves no sandbox behind.
    server.stop().await;
    assert_eq!(processes_with_argument(&run), Vec::<Vec<String>>::new());
}

#[tokio::test]
async fn required_sandbox_without_bubblewrap_fails_the_check_naming_the_package() {
    let config = "[checks]\ncommands = [{ name = 'test', run = 'true' }]\n";
    let mut server =
        TestServer::start_with(config, Some(PathBuf::from("/nonexistent/bwrap"))).await;
    let view = server.decide(diff_body("--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,3 @@\n # sample\n \n-line three\n+line 3\n")).await;
    assert_eq!(view.state.as_str(), "rejected");
    let summary = view.verdict.clone().unwrap().summary;
    assert!(summary.contains("bubblewrap"), "{summary}");
    server.stop().await;
}

#[tokio::test]
async fn timeouts_output_limits_and_a_scrubbed_environment() {
    // Unsandboxed on purpose: under bubblewrap the workspace is a bind mount, where git's
    // repository discovery stops anyway; the environment must protect the checkout alone.
    let config = "[checks]\nsandbox = 'off'\noutput_limit = 1024\ncommands = [\n\
        { name = 'env', run = 'env' },\n\
        { name = 'git', run = 'if git rev-parse --git-dir; then exit 1; fi' },\n\
        { name = 'chatty', run = 'seq 1 100000; echo last-line' },\n\
        { name = 'slow', run = 'echo started; sleep 30', timeout = '1s' },\n]\n";
    let mut server = TestServer::start(config).await;
    let started = Instant::now();
    let view = server.decide(diff_body("--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,3 @@\n # sample\n \n-line three\n+line 3\n")).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout did not stop the check"
    );
    assert_eq!(view.state.as_str(), "rejected");
    let verdict = view.verdict.clone().unwrap();
    assert_eq!(verdict.failed_step.as_deref(), Some("slow"));
    assert!(
        verdict.summary.contains("timed out after 1s"),
        "{}",
        verdict.summary
    );

    assert_eq!(view.steps[0].name, "scan");
    let env_step = &view.steps[1];
    let allowed = [
        "PATH",
        "HOME",
        "LANG",
        "TMPDIR",
        "CI",
        "AIRLOCK_CHANGE_ID",
        "GIT_CEILING_DIRECTORIES",
        "PWD",
        "SHLVL",
        "_",
        "OLDPWD",
    ];
    for line in env_step.output.lines() {
        let name = line.split('=').next().unwrap();
        assert!(allowed.contains(&name), "check environment leaks {name}");
    }
    // git run by a check finds no repository: not the user's, above the workspace.
    let git_step = &view.steps[2];
    assert_eq!(
        git_step.status,
        airlock_core::change::StepStatus::Passed,
        "{}",
        git_step.output
    );
    let chatty = &view.steps[3];
    assert!(
        chatty.output.len() <= 1024 && chatty.output.ends_with("last-line\n"),
        "{}",
        chatty.output.len()
    );
    assert!(chatty.output_total_bytes > 500_000);
    server.stop().await;
}

#[tokio::test]
async fn workspaces_are_reused_without_leftovers_and_the_checkout_is_untouched() {
    // One worker and one workspace force reuse. The first change's check litters the
    // workspace; the second change's check proves none of it survived.
    let config = "[checks]\nsandbox = 'best-effort'\ncommands = [{ name = 'inspect', run = 'if test -e marker; then test ! -e junk.txt && test ! -e build/out && test ! -e ignored.log && test ! -e first.txt && ! grep -q tamper README.md src/util.py || exit 7; else touch junk.txt ignored.log; mkdir -p build; echo x > build/out; echo tamper >> src/util.py; echo tamper >> README.md; fi' }]\n[server]\nworkers = 1\nworkspaces = 1\n";
    let mut server = TestServer::start(config).await;
    std::fs::write(server.root.join(".gitignore"), ".airlock/\n*.log\n").unwrap();
    git(&server.root, &["commit", "-qam", "ignore logs"]);
    let checkout_before = git(&server.root, &["status", "--porcelain", "--ignored"]);

    let first = server.decide(json!({ "title": "first", "edits": [{ "op": "create", "path": "first.txt", "content": "1\n" }] })).await;
    assert_eq!(
        first.state.as_str(),
        "awaiting_review",
        "{:?}",
        first.verdict
    );
    let second = server.decide(json!({ "title": "second", "edits": [{ "op": "create", "path": "marker", "content": "2\n" }] })).await;
    assert_eq!(
        second.state.as_str(),
        "awaiting_review",
        "leftovers from the first change: {:?} {:?}",
        second.verdict,
        second.steps
    );

    assert_eq!(
        git(&server.root, &["status", "--porcelain", "--ignored"]),
        checkout_before
    );
    assert!(!server.root.join("first.txt").exists() && !server.root.join("junk.txt").exists());
    server.stop().await;
}

#[tokio::test]
async fn a_restart_resumes_without_running_a_finished_step_again() {
    let log = tempfile::tempdir().unwrap();
    let log_path = log.path().display().to_string();
    let config = format!(
        "[checks]\nsandbox = 'off'\ncommands = [\n\
         {{ name = 'first', run = 'echo run >> {log_path}/first' }},\n\
         {{ name = 'second', run = 'echo start >> {log_path}/second; sleep 2; echo end >> {log_path}/second' }},\n]\n"
    );
    let mut server = TestServer::start(&config).await;
    let (status, created) = server.propose(diff_body("--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,3 @@\n # sample\n \n-line three\n+line 3\n")).await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap().to_owned();
    // Stop while `second` runs: it is cancelled, not recorded.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.path().join("second").exists() {
        assert!(Instant::now() < deadline, "the second step never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
    server.boot(&config, None).await;
    let view = server.wait(&id).await;
    assert_eq!(view.state.as_str(), "awaiting_review", "{:?}", view.verdict);
    assert_eq!(
        std::fs::read_to_string(log.path().join("first")).unwrap(),
        "run\n",
        "a finished step ran again"
    );
    assert_eq!(
        std::fs::read_to_string(log.path().join("second")).unwrap(),
        "start\nstart\nend\n"
    );
    let store = server.store().await;
    let kinds: Vec<String> = store
        .events(Some(&view.id.clone()))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "change.proposed",
            "checks.started",
            "checks.step_finished", // scan
            "checks.step_finished", // first
            "checks.resumed",
            "checks.step_finished", // second, run again
            "checks.passed",
            "review.requested"
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn the_scan_rejects_a_leaked_secret_before_any_check_runs() {
    let log = tempfile::tempdir_in("/var/tmp").unwrap();
    let config = format!(
        "[checks]\nsandbox = 'off'\ncommands = [{{ name = 'test', run = 'touch {}/ran' }}]\n",
        log.path().display()
    );
    let leak = "--- a/src/app.py\n+++ b/src/app.py\n@@ -1,4 +1,5 @@\n def total(a, b):\n     return a + b\n \n+GITHUB_TOKEN = \"ghp_R8x2kQ7mN4vB9cL1pZ6wY3tH5jD0sF2aE8uK\"\n print(total(1, 2))\n";
    let mut server = TestServer::start(&config).await;
    let view = server.decide(diff_body(leak)).await;
    assert_eq!(view.state.as_str(), "rejected");
    let verdict = view.verdict.clone().unwrap();
    assert_eq!(verdict.failed_step.as_deref(), Some("scan"));
    assert!(
        verdict
            .summary
            .contains("secret.github-token at src/app.py:4"),
        "{}",
        verdict.summary
    );
    let scan = &view.steps[0];
    let finding = scan
        .findings
        .iter()
        .find(|f| f.rule == "secret.github-token")
        .expect("a finding");
    assert_eq!((finding.path.as_str(), finding.line), ("src/app.py", 4));
    assert!(
        scan.output.contains("src/app.py:4") && scan.output.contains("fix:"),
        "{}",
        scan.output
    );
    assert!(
        !log.path().join("ran").exists(),
        "a check ran after a blocking finding"
    );
    // The secret itself is nowhere in what the API returns.
    let (_, raw) = server
        .request(
            "GET",
            &format!("/v1/changes/{}", view.id),
            Some(&server.token.clone()),
            None,
        )
        .await;
    assert!(
        !raw.to_string()
            .contains("ghp_R8x2kQ7mN4vB9cL1pZ6wY3tH5jD0sF2aE8uK")
    );
    server.stop().await;

    // With the scan disabled the same change reaches its checks and passes.
    server
        .boot(&format!("{config}[scan]\nenabled = false\n"), None)
        .await;
    let view = server.decide(diff_body(leak)).await;
    assert_eq!(view.state.as_str(), "awaiting_review", "{:?}", view.verdict);
    assert!(log.path().join("ran").exists());
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Level 2: review under a policy.

/// Level 1 with the scan only: review tests need no sandbox.
const REVIEW_CONFIG: &str = "[checks]\nsandbox = 'off'\n";

/// Two approvals, one of them from @payments.
const TWO_WITH_PAYMENTS: &str = "package airlock\n\nrisk := \"medium\"\n\napprovals := {\"count\": 2, \"groups\": {\"@payments\": 1}}\n";

fn create_file(path: &str, content: &str) -> Value {
    json!({ "title": format!("add {path}"), "edits": [{ "op": "create", "path": path, "content": content }] })
}

#[tokio::test]
async fn every_role_against_every_endpoint_follows_the_authorization_table() {
    let mut server = TestServer::start(REVIEW_CONFIG).await;
    let mut tokens = Vec::new();
    for role in Role::ALL {
        tokens.push((role, server.issue(&format!("{role}-user"), role).await));
    }
    let id = "chg_00000000000000000000000000";
    const ALL: &[&str] = &["agent", "reviewer", "operator", "admin"];
    const PROPOSERS: &[&str] = &["agent", "operator", "admin"];
    const REVIEWERS: &[&str] = &["reviewer", "operator", "admin"];
    const OPERATORS: &[&str] = &["operator", "admin"];
    const ADMINS: &[&str] = &["admin"];
    // (method, route, concrete path, body, roles allowed): the expected table.
    let table: Vec<(&str, &str, String, Value, &[&str])> = vec![
        ("GET", "/v1/changes", "/v1/changes".into(), Value::Null, ALL),
        (
            "GET",
            "/v1/changes/{id}",
            format!("/v1/changes/{id}"),
            Value::Null,
            ALL,
        ),
        (
            "GET",
            "/v1/changes/{id}/events",
            format!("/v1/changes/{id}/events"),
            Value::Null,
            ALL,
        ),
        (
            "POST",
            "/v1/changes",
            "/v1/changes".into(),
            json!({}),
            PROPOSERS,
        ),
        (
            "POST",
            "/v1/changes/{id}/revisions",
            format!("/v1/changes/{id}/revisions"),
            json!({}),
            PROPOSERS,
        ),
        (
            "POST",
            "/v1/changes/{id}/reviews",
            format!("/v1/changes/{id}/reviews"),
            json!({"verdict": "approve"}),
            REVIEWERS,
        ),
        (
            "POST",
            "/v1/changes/{id}/break-glass",
            format!("/v1/changes/{id}/break-glass"),
            json!({"reason": "r"}),
            OPERATORS,
        ),
        (
            "GET",
            "/v1/reviews",
            "/v1/reviews".into(),
            Value::Null,
            REVIEWERS,
        ),
        (
            "GET",
            "/v1/post-reviews",
            "/v1/post-reviews".into(),
            Value::Null,
            REVIEWERS,
        ),
        (
            "GET",
            "/v1/tokens",
            "/v1/tokens".into(),
            Value::Null,
            ADMINS,
        ),
        (
            "POST",
            "/v1/tokens",
            "/v1/tokens".into(),
            json!({"name": "new-bot", "role": "agent"}),
            ADMINS,
        ),
        (
            "DELETE",
            "/v1/tokens/{id}",
            "/v1/tokens/tok_000000000000".into(),
            Value::Null,
            ADMINS,
        ),
        ("GET", "/v1/pause", "/v1/pause".into(), Value::Null, ALL),
        (
            "POST",
            "/v1/pause",
            "/v1/pause".into(),
            json!({"reason": "matrix"}),
            OPERATORS,
        ),
        (
            "DELETE",
            "/v1/pause",
            "/v1/pause".into(),
            Value::Null,
            OPERATORS,
        ),
        (
            "GET",
            "/v1/audit/checkpoint",
            "/v1/audit/checkpoint".into(),
            Value::Null,
            ALL,
        ),
        (
            "POST",
            "/v1/audit/checkpoint",
            "/v1/audit/checkpoint".into(),
            Value::Null,
            OPERATORS,
        ),
        ("GET", "/v1/queue", "/v1/queue".into(), Value::Null, ALL),
        (
            "POST",
            "/v1/changes/{id}/rollback",
            format!("/v1/changes/{id}/rollback"),
            json!({"reason": "r"}),
            OPERATORS,
        ),
        (
            "POST",
            "/v1/changes/{id}/rollout",
            format!("/v1/changes/{id}/rollout"),
            json!({"action": "continue", "reason": "r"}),
            OPERATORS,
        ),
    ];
    // The table covers every endpoint the server has, and nothing else.
    let mut served: Vec<(&str, &str)> = airlock_server::Endpoint::ALL
        .iter()
        .map(|e| e.route())
        .collect();
    let mut tested: Vec<(&str, &str)> = table.iter().map(|(m, route, ..)| (*m, *route)).collect();
    served.sort();
    tested.sort();
    assert_eq!(served, tested);
    for endpoint in airlock_server::Endpoint::ALL {
        let (_, route) = endpoint.route();
        let expected = table
            .iter()
            .find(|row| (row.0, row.1) == endpoint.route())
            .unwrap()
            .4;
        let roles: Vec<&str> = endpoint.roles().iter().map(|r| r.as_str()).collect();
        assert_eq!(roles, expected, "{route}");
    }

    let mut matrix =
        String::from("endpoint                                  agent reviewer operator admin\n");
    for (method, route, path, body, allowed) in &table {
        let (status, answer) = server.request(method, path, None, Some(body.clone())).await;
        assert_eq!(status, 401, "{method} {path} without a token: {answer}");
        matrix.push_str(&format!("{:<42}", format!("{method} {route}")));
        for (role, token) in &tokens {
            let (status, answer) = server
                .request(method, path, Some(token), Some(body.clone()))
                .await;
            let denied = status == 403 && answer["error"]["code"] == "forbidden";
            assert_eq!(
                !denied,
                allowed.contains(&role.as_str()),
                "{role} on {method} {path}: HTTP {status} {answer}"
            );
            if denied {
                let message = answer["error"]["message"].as_str().unwrap();
                assert!(message.contains("allowed roles"), "{message}");
            }
            matrix.push_str(&format!(" {:<8}", if denied { "deny" } else { "allow" }));
        }
        matrix.push('\n');
    }
    println!("{matrix}");
    server.stop().await;
}

#[tokio::test]
async fn separation_of_duties_distinct_humans_groups_and_revisions() {
    let mut server = TestServer::start_custom(
        REVIEW_CONFIG,
        None,
        Some(TWO_WITH_PAYMENTS),
        std::sync::Arc::new(airlock_server::SystemClock),
    )
    .await;
    let bot = server
        .issue_as("bot", Role::Agent, Some("olivia"), &[])
        .await;
    let other_bot = server.issue_as("other-bot", Role::Agent, None, &[]).await;
    let olivia = server
        .issue_as("olivia", Role::Reviewer, None, &["@payments"])
        .await;
    let impostor = server
        .issue_as("bot", Role::Reviewer, None, &["@payments"])
        .await;
    let alice = server.issue_as("alice", Role::Reviewer, None, &[]).await;
    let alice_again = server.issue_as("alice", Role::Operator, None, &[]).await;
    let bob = server
        .issue_as("bob", Role::Reviewer, None, &["@payments"])
        .await;
    let carol = server
        .issue_as("carol", Role::Reviewer, None, &["@payments"])
        .await;
    server.token = bot.clone();

    let review = |token: &str, id: &str, verdict: &str, comment: &str| {
        let path = format!("/v1/changes/{id}/reviews");
        let token = token.to_owned();
        let body = json!({ "verdict": verdict, "comment": comment });
        let server = &server;
        async move {
            server
                .request("POST", &path, Some(&token), Some(body))
                .await
        }
    };

    let first = server
        .decide(create_file("src/pay.py", "AMOUNT = 1\n"))
        .await;
    assert_eq!(
        first.state.as_str(),
        "awaiting_review",
        "{:?}",
        first.verdict
    );
    let id = first.id.to_string();
    let (_, view) = server
        .request("GET", &format!("/v1/changes/{id}"), Some(&bot), None)
        .await;
    assert_eq!(view["review"]["obligations"]["approvals"], 2);
    assert_eq!(
        view["review"]["missing"],
        json!(["1 from @payments", "1 more approval"])
    );

    // Refused: any agent token, the agent's owner, a human named like the agent.
    for (token, status, code, part) in [
        (&bot, 403, "forbidden", "role `agent`"),
        (&other_bot, 403, "forbidden", "role `agent`"),
        (&olivia, 403, "separation_of_duties", "owns the agent `bot`"),
        (
            &impostor,
            403,
            "separation_of_duties",
            "proposed this change",
        ),
    ] {
        let (actual, answer) = review(token, &id, "approve", "lgtm").await;
        assert_eq!(
            (actual, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{answer}"
        );
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(part),
            "{answer}"
        );
    }
    let (status, answer) = review(&alice, &id, "approve", "").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "awaiting_review");
    assert_eq!(answer["missing"], json!(["1 from @payments"]));
    // The same human through another token: counted once, refused.
    let (status, answer) = review(&alice_again, &id, "approve", "").await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already approved")
    );
    let (status, answer) = review(&bob, &id, "approve", "ok for payments").await;
    assert_eq!(
        (status, answer["state"].as_str()),
        (200, Some("approved")),
        "{answer}"
    );
    let kinds = server.event_kinds(&id).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "review.approved").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(kinds.last().unwrap(), "change.approved");
    let (status, _) = review(&carol, &id, "approve", "").await;
    assert_eq!(status, 409, "an approved change takes no more reviews");

    // Request changes, a new revision: earlier approvals no longer count.
    let second = server.decide(create_file("src/fee.py", "FEE = 1\n")).await;
    let id = second.id.to_string();
    assert_eq!(review(&alice, &id, "approve", "").await.0, 200);
    let (status, answer) = review(&bob, &id, "request_changes", "").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_text")),
        "a comment is required"
    );
    let (status, answer) = review(&bob, &id, "request_changes", "use a Decimal").await;
    assert_eq!(
        (status, answer["state"].as_str()),
        (200, Some("changes_requested")),
        "{answer}"
    );
    let revision = json!({ "edits": [{ "op": "create", "path": "src/fee.py", "content": "from decimal import Decimal\nFEE = Decimal(1)\n" }] });
    let (status, answer) = server
        .request(
            "POST",
            &format!("/v1/changes/{id}/revisions"),
            Some(&other_bot),
            Some(revision.clone()),
        )
        .await;
    assert_eq!(status, 403, "another agent may not revise: {answer}");
    let (status, answer) = server
        .request(
            "POST",
            &format!("/v1/changes/{id}/revisions"),
            Some(&bot),
            Some(revision.clone()),
        )
        .await;
    assert_eq!(
        (status, answer["revision"].as_i64()),
        (201, Some(2)),
        "{answer}"
    );
    let revised = server.wait(&id).await;
    assert_eq!(
        (revised.state.as_str(), revised.revision),
        ("awaiting_review", 2)
    );
    assert_eq!(
        revised.steps.len(),
        1,
        "Level 1 ran again for revision 2: {:?}",
        revised.steps
    );
    let (_, view) = server
        .request("GET", &format!("/v1/changes/{id}"), Some(&bot), None)
        .await;
    assert_eq!(
        view["review"]["approvers"],
        json!([]),
        "alice's approval of revision 1 was dismissed"
    );
    assert_eq!(
        review(&alice, &id, "approve", "").await.0,
        200,
        "alice may approve revision 2"
    );
    let (status, answer) = review(&bob, &id, "approve", "").await;
    assert_eq!(answer["state"], "approved", "{status} {answer}");
    let (status, _) = server
        .request(
            "POST",
            &format!("/v1/changes/{id}/revisions"),
            Some(&bot),
            Some(revision),
        )
        .await;
    assert_eq!(status, 409, "an approved change takes no revision");

    // Two approvals racing: both recorded, the change approved exactly once.
    let third = server.decide(create_file("src/tax.py", "TAX = 1\n")).await;
    let id = third.id.to_string();
    let (a, b) = tokio::join!(
        review(&alice, &id, "approve", ""),
        review(&carol, &id, "approve", "")
    );
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    let view = server.wait_for_state(&id, "approved").await;
    assert_eq!(view["review"]["approvers"], json!(["alice", "carol"]));
    let kinds = server.event_kinds(&id).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "change.approved").count(),
        1,
        "{kinds:?}"
    );

    // A reject needs a reason and ends the change.
    let fourth = server.decide(create_file("src/x.py", "X = 2\n")).await;
    let id = fourth.id.to_string();
    let (status, answer) = review(&carol, &id, "reject", "not needed").await;
    assert_eq!((status, answer["state"].as_str()), (200, Some("rejected")));
    let (_, view) = server
        .request("GET", &format!("/v1/changes/{id}"), Some(&bot), None)
        .await;
    assert!(
        view["verdict"]["summary"]
            .as_str()
            .unwrap()
            .contains("rejected in review by carol: not needed")
    );
    server.stop().await;
}

#[tokio::test]
async fn gate_files_need_an_admin_and_a_slow_or_broken_policy_fails_closed() {
    // The scan's gate-tamper findings do not block here, so the change reaches review.
    let config = "[checks]\nsandbox = 'off'\n[scan]\nallow_rules = ['gate-tamper']\n";
    let mut server = TestServer::start_custom(
        config,
        None,
        Some("package airlock\n\nrisk := \"low\"\n\napprovals := {\"count\": 1}\n\nauto_approve := true\n"),
        std::sync::Arc::new(airlock_server::SystemClock),
    )
    .await;
    let reviewer = server.issue_as("rita", Role::Reviewer, None, &[]).await;
    let admin = server.issue_as("ada", Role::Admin, None, &[]).await;
    // Auto-approval, which this policy grants for low risk...
    let plain = server.decide(create_file("docs/new.md", "hello\n")).await;
    assert_eq!(plain.state.as_str(), "approved", "{:?}", plain.verdict);
    assert_eq!(
        server.event_kinds(plain.id.as_str()).await.last().unwrap(),
        "change.approved"
    );
    // ...never covers CODEOWNERS: an admin must approve.
    let gate = server
        .decide(create_file("CODEOWNERS", "* @everyone\n"))
        .await;
    assert_eq!(gate.state.as_str(), "awaiting_review", "{:?}", gate.verdict);
    let id = gate.id.to_string();
    let (status, answer) = server
        .request(
            "POST",
            &format!("/v1/changes/{id}/reviews"),
            Some(&reviewer),
            Some(json!({"verdict": "approve"})),
        )
        .await;
    assert_eq!(
        (status, answer["state"].as_str()),
        (200, Some("awaiting_review")),
        "{answer}"
    );
    assert!(
        answer["missing"][0].as_str().unwrap().contains("admin"),
        "{answer}"
    );
    let (_, answer) = server
        .request(
            "POST",
            &format!("/v1/changes/{id}/reviews"),
            Some(&admin),
            Some(json!({"verdict": "approve"})),
        )
        .await;
    assert_eq!(answer["state"], "approved", "{answer}");
    server.stop().await;

    // A policy that runs away is stopped at its time limit; the change fails, closed.
    let slow = "package airlock\n\nrisk := \"low\" if {\n  count([x | some i in numbers.range(1, 100000); some j in numbers.range(1, 100000); x := i * j]) > 0\n}\n";
    let config = "[checks]\nsandbox = 'off'\n[review]\npolicy_timeout = '300ms'\n";
    let mut server = TestServer::start_custom(
        config,
        None,
        Some(slow),
        std::sync::Arc::new(airlock_server::SystemClock),
    )
    .await;
    let started = Instant::now();
    let view = server.decide(create_file("src/a.py", "A = 1\n")).await;
    assert_eq!(view.state.as_str(), "failed", "{:?}", view.verdict);
    let summary = &view.verdict.as_ref().unwrap().summary;
    assert!(summary.contains("could not be evaluated"), "{summary}");
    assert!(summary.contains("within its limit of 300 ms"), "{summary}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        server.event_kinds(view.id.as_str()).await.last().unwrap(),
        "policy.failed"
    );
    server.stop().await;

    // A policy that answers nonsense fails closed too.
    let wrong = "package airlock\n\nrisk := \"severe\"\n";
    let mut server = TestServer::start_custom(
        REVIEW_CONFIG,
        None,
        Some(wrong),
        std::sync::Arc::new(airlock_server::SystemClock),
    )
    .await;
    let view = server.decide(create_file("src/a.py", "A = 1\n")).await;
    assert_eq!(view.state.as_str(), "failed");
    assert!(
        view.verdict.as_ref().unwrap().summary.contains("severe"),
        "{:?}",
        view.verdict
    );
    server.stop().await;
}

#[tokio::test]
async fn review_deadlines_follow_the_clock_and_break_glass_leaves_a_post_review() {
    let start = 1_795_000_000_000;
    let clock = std::sync::Arc::new(airlock_server::ManualClock::new(start));
    let config = "[checks]\nsandbox = 'off'\n[review]\nsla = '4h'\nexpire_after = '8h'\npost_review_sla = '24h'\n";
    let mut server = TestServer::start_custom(config, None, None, clock.clone()).await;
    let operator = server.issue_as("oscar", Role::Operator, None, &[]).await;
    let reviewer = server.issue_as("rita", Role::Reviewer, None, &[]).await;
    let hour = Duration::from_secs(3600);

    let view = server.decide(create_file("src/slow.py", "S = 1\n")).await;
    assert_eq!(view.state.as_str(), "awaiting_review");
    let id = view.id.to_string();
    clock.advance(hour * 2 - Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !server
            .event_kinds(&id)
            .await
            .contains(&"review.reminder".to_owned()),
        "reminded early"
    );
    clock.advance(Duration::from_secs(60));
    server.wait_for_event(&id, "review.reminder").await;
    clock.advance(hour * 2);
    server.wait_for_event(&id, "review.escalated").await;
    clock.advance(hour * 4);
    let expired = server.wait_for_state(&id, "expired").await;
    assert!(
        expired["verdict"]["summary"]
            .as_str()
            .unwrap()
            .contains("expired after 8h"),
        "{expired}"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let kinds = server.event_kinds(&id).await;
    for kind in ["review.reminder", "review.escalated", "review.expired"] {
        assert_eq!(
            kinds.iter().filter(|k| *k == kind).count(),
            1,
            "{kind}: {kinds:?}"
        );
    }

    // Break-glass: only operators and admins, with a reason; review is skipped.
    let mut urgent = create_file("src/hotfix.py", "FIX = 1\n");
    urgent["urgent"] = json!({ "reason": "prod down, INC-42" });
    let (status, answer) = server.propose(urgent.clone()).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "an agent cannot break the glass"
    );
    let (status, created) = server
        .request("POST", "/v1/changes", Some(&operator), Some(urgent))
        .await;
    assert_eq!(status, 201, "{created}");
    let hotfix = created["id"].as_str().unwrap().to_owned();
    let view = server.wait(&hotfix).await;
    assert_eq!(view.state.as_str(), "approved", "{:?}", view.verdict);
    assert_eq!(view.steps.len(), 1, "Level 1 still ran");
    let kinds = server.event_kinds(&hotfix).await;
    assert_eq!(
        kinds,
        [
            "change.proposed",
            "change.break_glass",
            "checks.started",
            "checks.step_finished",
            "checks.passed",
            "change.approved",
            "post_review.opened"
        ]
    );
    // On an existing change awaiting review.
    let waiting = server.decide(create_file("src/later.py", "L = 1\n")).await;
    let path = format!("/v1/changes/{}/break-glass", waiting.id);
    let (status, _) = server
        .request("POST", &path, Some(&reviewer), Some(json!({"reason": "x"})))
        .await;
    assert_eq!(status, 403);
    let (status, answer) = server
        .request(
            "POST",
            &path,
            Some(&operator),
            Some(json!({"reason": "  "})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_text"))
    );
    let (status, answer) = server
        .request(
            "POST",
            &path,
            Some(&operator),
            Some(json!({"reason": "customer escalation"})),
        )
        .await;
    assert_eq!(
        (status, answer["state"].as_str()),
        (200, Some("approved")),
        "{answer}"
    );
    let (status, _) = server
        .request(
            "POST",
            &path,
            Some(&operator),
            Some(json!({"reason": "again"})),
        )
        .await;
    assert_eq!(status, 409, "glass breaks once");

    // The post-deployment reviews come due, are listed and alerted, then closed.
    let (_, overdue) = server
        .request(
            "GET",
            "/v1/post-reviews?overdue=true",
            Some(&reviewer),
            None,
        )
        .await;
    assert_eq!(overdue, json!([]));
    clock.advance(hour * 25);
    server.wait_for_event(&hotfix, "post_review.overdue").await;
    let (_, overdue) = server
        .request(
            "GET",
            "/v1/post-reviews?overdue=true",
            Some(&reviewer),
            None,
        )
        .await;
    assert_eq!(overdue.as_array().unwrap().len(), 2, "{overdue}");
    let (status, answer) = server
        .request(
            "POST",
            &format!("/v1/changes/{hotfix}/reviews"),
            Some(&operator),
            Some(json!({"verdict": "approve"})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("separation_of_duties")),
        "whoever broke the glass does not review it: {answer}"
    );
    let (status, answer) = server
        .request(
            "POST",
            &format!("/v1/changes/{hotfix}/reviews"),
            Some(&reviewer),
            Some(json!({"verdict": "approve", "comment": "fix was right"})),
        )
        .await;
    assert_eq!(
        (status, answer["post_review_completed"].as_bool()),
        (200, Some(true)),
        "{answer}"
    );
    let (_, overdue) = server
        .request(
            "GET",
            "/v1/post-reviews?overdue=true",
            Some(&reviewer),
            None,
        )
        .await;
    assert_eq!(overdue.as_array().unwrap().len(), 1, "{overdue}");
    let kinds = server.event_kinds(&hotfix).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "post_review.overdue").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(kinds.last().unwrap(), "post_review.completed");
    server.stop().await;
}

#[tokio::test]
async fn agent_limits_answer_429_with_retry_after_and_the_kill_switch_is_recorded() {
    let clock = std::sync::Arc::new(airlock_server::ManualClock::new(1_795_000_000_000));
    let config = "[checks]\nsandbox = 'off'\n[limits]\nagent_changes_in_flight = 2\nagent_proposals_per_hour = 3\n";
    let mut server = TestServer::start_custom(config, None, None, clock.clone()).await;
    let reviewer = server.issue_as("rita", Role::Reviewer, None, &[]).await;
    let operator = server.issue_as("oscar", Role::Operator, None, &[]).await;
    let first = server.decide(create_file("a.txt", "a\n")).await;
    server.decide(create_file("b.txt", "b\n")).await;
    let (status, answer) = server.propose(create_file("c.txt", "c\n")).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("agent_changes_in_flight")
    );
    assert_eq!(answer["retry_after_header"], 60);
    // Humans are not limited.
    let (status, _) = server
        .request(
            "POST",
            "/v1/changes",
            Some(&operator),
            Some(create_file("op.txt", "o\n")),
        )
        .await;
    assert_eq!(status, 201);
    let path = format!("/v1/changes/{}/reviews", first.id);
    let (status, _) = server
        .request(
            "POST",
            &path,
            Some(&reviewer),
            Some(json!({"verdict": "reject", "comment": "no"})),
        )
        .await;
    assert_eq!(status, 200);
    let third = server.decide(create_file("c.txt", "c\n")).await;
    assert_eq!(third.state.as_str(), "awaiting_review");
    clock.advance(Duration::from_secs(600));
    let path = format!("/v1/changes/{}/reviews", third.id);
    server
        .request(
            "POST",
            &path,
            Some(&reviewer),
            Some(json!({"verdict": "reject", "comment": "no"})),
        )
        .await;
    let (status, answer) = server.propose(create_file("d.txt", "d\n")).await;
    assert_eq!(status, 429, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("agent_proposals_per_hour"),
        "{answer}"
    );
    assert_eq!(
        answer["retry_after_header"], 3000,
        "the oldest proposal leaves the window in 50 minutes"
    );
    clock.advance(Duration::from_secs(3001));
    let (status, answer) = server.propose(create_file("d.txt", "d\n")).await;
    assert_eq!(status, 201, "{answer}");

    // The kill switch: on, once; off, once; each an event with who and why.
    let (_, state) = server
        .request("GET", "/v1/pause", Some(&reviewer), None)
        .await;
    assert_eq!(state["paused"], false);
    let (status, answer) = server
        .request(
            "POST",
            "/v1/pause",
            Some(&operator),
            Some(json!({"reason": "incident INC-7"})),
        )
        .await;
    assert_eq!(
        (status, answer["changed"].as_bool()),
        (200, Some(true)),
        "{answer}"
    );
    let (_, answer) = server
        .request(
            "POST",
            "/v1/pause",
            Some(&operator),
            Some(json!({"reason": "again"})),
        )
        .await;
    assert_eq!(answer["changed"], false);
    assert_eq!(answer["pause"]["reason"], "incident INC-7");
    let (_, state) = server
        .request("GET", "/v1/pause", Some(&server.token.clone()), None)
        .await;
    assert_eq!(
        (
            state["paused"].as_bool(),
            state["pause"]["by"]["name"].as_str()
        ),
        (Some(true), Some("oscar"))
    );
    let (status, answer) = server
        .request("DELETE", "/v1/pause", Some(&operator), None)
        .await;
    assert_eq!((status, answer["changed"].as_bool()), (200, Some(true)));
    let store = server.store().await;
    let kinds: Vec<String> = store
        .events(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| k.starts_with("deploy."))
        .collect();
    assert_eq!(kinds, ["deploy.paused", "deploy.resumed"]);
    server.stop().await;
}

#[tokio::test]
async fn break_glass_skips_check_commands_only_when_the_policy_allows_it() {
    // A check that always fails: only skipping it lets the urgent change through.
    let config = "[checks]\nsandbox = 'off'\ncommands = [{ name = 'test', run = 'exit 3' }]\n";
    let allows = "package airlock\n\nrisk := \"high\"\n\nbreak_glass_skips_checks := true\n";
    let mut server = TestServer::start_custom(
        config,
        None,
        Some(allows),
        std::sync::Arc::new(airlock_server::SystemClock),
    )
    .await;
    let operator = server.issue_as("oscar", Role::Operator, None, &[]).await;
    let mut urgent = create_file("src/hotfix.py", "FIX = 1\n");
    urgent["urgent"] = json!({ "reason": "prod down" });
    let (status, created) = server
        .request("POST", "/v1/changes", Some(&operator), Some(urgent.clone()))
        .await;
    assert_eq!(status, 201, "{created}");
    let view = server.wait(created["id"].as_str().unwrap()).await;
    assert_eq!(view.state.as_str(), "approved", "{:?}", view.verdict);
    let test = &view.steps[1];
    assert_eq!(test.status, airlock_core::change::StepStatus::Skipped);
    assert!(
        test.reason.as_deref().unwrap().contains("break-glass"),
        "{test:?}"
    );
    assert_eq!(view.steps[0].name, "scan", "the scan always runs");
    // Not urgent: the check runs and rejects.
    let (status, created) = server
        .request(
            "POST",
            "/v1/changes",
            Some(&operator),
            Some(create_file("src/b.py", "B = 1\n")),
        )
        .await;
    assert_eq!(status, 201);
    let view = server.wait(created["id"].as_str().unwrap()).await;
    assert_eq!(view.state.as_str(), "rejected");
    server.stop().await;

    // The default policy does not allow skipping: the failing check rejects even an urgent change.
    let mut server = TestServer::start_custom(
        config,
        None,
        None,
        std::sync::Arc::new(airlock_server::SystemClock),
    )
    .await;
    let operator = server.issue_as("oscar", Role::Operator, None, &[]).await;
    let (_, created) = server
        .request("POST", "/v1/changes", Some(&operator), Some(urgent))
        .await;
    let view = server.wait(created["id"].as_str().unwrap()).await;
    assert_eq!(view.state.as_str(), "rejected", "{:?}", view.steps);
    assert_eq!(view.steps[1].exit_code, Some(3));
    server.stop().await;
}

#[tokio::test]
async fn payloads_older_than_the_retention_are_purged_and_the_purge_is_recorded() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = std::sync::Arc::new(airlock_server::ManualClock::new(now));
    let config = "[checks]\nsandbox = 'off'\ncommands = [{ name = 'test', run = 'echo output to keep for a while; exit 1' }]\n\
                  [audit]\ncheckpoint_interval = '1s'\npayload_retention = '1d'\n";
    let mut server = TestServer::start_custom(config, None, None, clock.clone()).await;
    let view = server.decide(create_file("src/new.py", "N = 1\n")).await;
    assert_eq!(view.state.as_str(), "rejected");
    let payloads = server.root.join(".airlock/audit/payloads");
    let count = || {
        std::fs::read_dir(&payloads)
            .map(|entries| entries.count())
            .unwrap_or(0)
    };
    let purge_events = || async {
        server
            .store()
            .await
            .events(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|event| event.kind == "audit.purged")
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while count() == 0 {
        assert!(
            Instant::now() < deadline,
            "the test output never reached the log"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Younger than the retention: kept across several checkpoints.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(count() > 0);
    assert!(purge_events().await.is_empty());

    clock.advance(Duration::from_secs(2 * 86_400));
    let deadline = Instant::now() + Duration::from_secs(20);
    while count() > 0 || purge_events().await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "payloads past the retention are kept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = purge_events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].actor.name, "retention");
    assert!(
        events[0].data["payloads"].as_u64().unwrap() >= 1,
        "{:?}",
        events[0]
    );
    server.stop().await;
    // The log still verifies with its payloads gone.
    let dir = server.root.join(".airlock/audit");
    let verifier =
        airlock_audit::keys::load_verifier_file(&airlock_audit::keys::verifier_key_path(&dir))
            .unwrap();
    let report = airlock_audit::verify::verify_dir(
        &dir,
        &verifier,
        &[],
        airlock_audit::verify::VerifyOptions { deep: true },
    )
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.problem);
}
