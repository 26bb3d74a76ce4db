//! `airlock demo`: the whole flow on a generated sample repository, with nothing to set
//! up. It creates a small service with a real test suite, starts the server in-process
//! on a free port, proposes one good change and one that breaks a test, and prints what
//! airlock decided about each and why. Then deployment with the `local` provider: the
//! approved change is committed and rolled out to 100 % behind airlock's proxy (the
//! service is airlock's own sample service), and a change that makes the service fail
//! is rolled back with a revert commit.

use std::time::Instant;

use airlock_core::change::ChangeState;
use airlock_core::config::{self, Config};
use airlock_core::event::{Actor, ActorKind};
use airlock_core::ids::Role;
use airlock_server::ChangeView;
use airlock_store::SqliteStore;
use anyhow::Context;

use crate::Outcome;
use crate::client::Client;
use crate::commands::{print_change, wait_for_decision};

const PRICE: &str = r#"#!/bin/sh
# price QUANTITY UNIT_CENTS: prints the order total in cents.
# Orders of 10 items or more get 10% off.
set -eu
quantity=$1
unit=$2
total=$((quantity * unit))
if [ "$quantity" -ge 10 ]; then
  total=$((total * 90 / 100))
fi
echo "$total"
"#;

const TESTS: &str = r#"#!/bin/sh
# The pricing service's test suite: each case runs bin/price and compares its answer.
failures=0
check() {
  expected=$1
  shift
  actual=$(sh bin/price "$@")
  if [ "$actual" = "$expected" ]; then
    echo "ok   price $* = $actual"
  else
    echo "FAIL price $*: expected $expected, got $actual"
    failures=$((failures + 1))
  fi
}
check 500 5 100
check 900 10 100
check 1800 20 100
if [ "$failures" -ne 0 ]; then
  echo "$failures test(s) failed"
  exit 1
fi
echo "all tests passed"
"#;

const README: &str = "# pricing\n\nA small pricing service: `sh bin/price QUANTITY UNIT_CENTS`.\nTests: `sh tests/run.sh`.\n";

pub fn run(json: bool, keep: bool) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("airlock-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let root = dir.path().join("pricing");
    let repo = airlock_git::init_repository(
        &root,
        "main",
        &[
            ("bin/price", PRICE.as_bytes(), true),
            ("tests/run.sh", TESTS.as_bytes(), true),
            ("README.md", README.as_bytes(), false),
            ("service.conf", b"error_rate = 0\n".as_slice(), false),
        ],
        "pricing service with its tests",
    )?;

    // bubblewrap when installed, otherwise unsandboxed: the demo must run on a machine
    // that has nothing but the Rust toolchain. The verdicts say which isolation was used.
    let proxy = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let exe = std::env::current_exe().context("cannot find the airlock executable")?;
    let mut text = config::default_file_text("main", &[("test", "sh tests/run.sh")])
        .replace("sandbox = \"required\"", "sandbox = \"best-effort\"");
    text.push_str(&format!(
        "\n[deploy]\nprovider = \"local\"\nstart = '''exec '{}' sample-service --port $PORT --config service.conf'''\n\
         listen = \"{proxy}\"\nsteps = [10, 50, 100]\nsoak = \"1s\"\npoll = \"100ms\"\n[deploy.guards]\nmin_requests = 30\n",
        exe.display()
    ));
    let config = Config::parse(&text, config::FILE_NAME)?;
    std::fs::write(root.join(config::FILE_NAME), &text)?;
    let state_dir = airlock_server::state_dir(repo.root());
    std::fs::create_dir_all(&state_dir)?;
    std::fs::write(state_dir.join(".gitignore"), "*\n")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let database = repo.root().join(&config.server.database);
    let (running, secret) = runtime.block_on(async {
        let store = SqliteStore::open(&database).await?;
        let operator = operator_actor();
        let issued = airlock_server::tokens::issue(
            &store,
            "demo-agent",
            Role::Agent,
            Some("demo"),
            &[],
            operator,
            airlock_server::now_ms(),
        )
        .await?;
        let reviewer = airlock_server::tokens::issue(
            &store,
            "demo-reviewer",
            Role::Reviewer,
            None,
            &[],
            operator_actor(),
            airlock_server::now_ms(),
        )
        .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let options = airlock_server::ServiceOptions {
            repo_root: repo.root().to_path_buf(),
            state_dir: state_dir.clone(),
            config: config.clone(),
            bwrap_path: None,
            clock: std::sync::Arc::new(airlock_server::SystemClock),
        };
        let running = airlock_server::start(options, store, listener).await?;
        anyhow::Ok((running, (issued.secret, reviewer.secret)))
    })?;
    let (secret, reviewer_secret) = secret;
    let server = format!("http://{}", running.addr);
    let client = Client::new(&server, Some(&secret))?;
    let reviewer = Client::new(&server, Some(&reviewer_secret))?;

    let result = propose_both(&client, !json).and_then(|(waiting, bad)| {
        // Level 2: the default policy asks for one human approval; a reviewer gives it.
        let review_before = waiting.review.clone();
        let _: serde_json::Value = reviewer.post(
            &format!("/v1/changes/{}/reviews", waiting.id),
            &serde_json::json!({ "verdict": "approve", "comment": "the new tier has a test" }),
        )?;
        let approved: ChangeView = client.get(&format!("/v1/changes/{}", waiting.id))?;
        // Levels 3 and 4 under traffic: the approved change rolls out; then one that makes
        // the service fail is rolled back.
        let _load = Load::start(proxy);
        let good = wait_until(&client, waiting.id.as_str(), &[ChangeState::Deployed])?;
        let failing = serde_json::json!({
            "title": "Tune the service configuration",
            "description": "Ops tweak.",
            "edits": [{ "op": "replace", "path": "service.conf", "old_text": "error_rate = 0", "new_text": "error_rate = 1" }],
        });
        let created: serde_json::Value = client.post("/v1/changes", &failing)?;
        let id = created["id"].as_str().context("no change id in the server's answer")?.to_owned();
        wait_for_decision(&client, &id, !json)?;
        let _: serde_json::Value = reviewer.post(
            &format!("/v1/changes/{id}/reviews"),
            &serde_json::json!({ "verdict": "approve", "comment": "looks harmless" }),
        )?;
        let failed = wait_until(&client, &id, &[ChangeState::RolledBack])?;
        Ok((waiting.state, review_before, approved, good, bad, failed))
    });
    runtime.block_on(running.shutdown());
    let (waited_in, review_before, approved, good, bad, failed) = result?;

    let ok = waited_in == ChangeState::AwaitingReview
        && approved.state == ChangeState::Approved
        && good.state == ChangeState::Deployed
        && bad.state == ChangeState::Rejected
        && failed.state == ChangeState::RolledBack
        && failed
            .deployment
            .as_ref()
            .is_some_and(|d| d.revert_commit.is_some());
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "repository": repo.root(),
                "server": server,
                "changes": [good, bad, failed],
                "as_expected": ok,
                "elapsed_ms": started.elapsed().as_millis() as u64,
            }))?
        );
    } else {
        println!(
            "airlock demo: a sample pricing service at {}",
            repo.root().display()
        );
        println!(
            "server: {server} (in-process, SQLite at {})",
            database.display()
        );
        println!();
        println!("1. An agent adds a bulk discount, with a test (proposed as edits).");
        if let Some(review) = &review_before {
            println!(
                "   Level 1 passed; the review policy rated it {} risk and asked for: {}",
                review["obligations"]["risk"].as_str().unwrap_or("?"),
                crate::commands::strings(&review["missing"]).join(", ")
            );
        }
        println!(
            "   A reviewer (never the agent or its owner) approved it; it was committed to main"
        );
        println!(
            "   and rolled out (10, 50, 100 % beside a baseline) behind the proxy at http://{proxy}:"
        );
        print_change(&good);
        println!();
        println!("2. An agent 'simplifies' the discount rule and breaks it (proposed as a diff):");
        print_change(&bad);
        println!();
        println!(
            "3. An approved change makes the service fail: the canary's errors rolled it back,"
        );
        println!(
            "   with a revert commit on main (never a reset), and the reverted version serves:"
        );
        print_change(&failed);
        println!();
        let unsandboxed = [&good, &bad].iter().any(|view| {
            view.verdict
                .as_ref()
                .and_then(|v| v.isolation.as_deref())
                .is_some_and(|i| i.starts_with("none"))
        });
        if unsandboxed {
            println!(
                "note: bubblewrap is not installed, so these checks ran without a sandbox; \
                 `apt-get install bubblewrap` isolates them (airlock.toml defaults to sandbox = \"required\")."
            );
        }
        println!(
            "{} in {:.1} s: the good change passed Level 1 and review and reached 100 %, the broken one was rejected with the failing test's output, the failing service was rolled back.",
            if ok { "As expected" } else { "NOT as expected" },
            started.elapsed().as_secs_f64()
        );
    }
    if keep {
        let kept = dir.keep();
        eprintln!("kept the sample repository in {}", kept.display());
    }
    Ok(if ok {
        Outcome::Success
    } else {
        Outcome::Rejected
    })
}

fn propose_both(client: &Client, progress: bool) -> anyhow::Result<(ChangeView, ChangeView)> {
    let good = serde_json::json!({
        "title": "Bulk discount: 20% off from 100 items",
        "description": "Large orders get a bigger discount. Adds a test.",
        "edits": [
            {
                "op": "replace",
                "path": "bin/price",
                "old_text": "if [ \"$quantity\" -ge 10 ]; then\n  total=$((total * 90 / 100))\nfi\n",
                "new_text": "if [ \"$quantity\" -ge 100 ]; then\n  total=$((total * 80 / 100))\nelif [ \"$quantity\" -ge 10 ]; then\n  total=$((total * 90 / 100))\nfi\n",
            },
            {
                "op": "replace",
                "path": "tests/run.sh",
                "old_text": "check 1800 20 100\n",
                "new_text": "check 1800 20 100\ncheck 16000 100 200\n",
            },
        ],
    });
    let broken_price = PRICE.replace("-ge 10 ]", "-gt 10 ]");
    let bad = serde_json::json!({
        "title": "Simplify the discount condition",
        "description": "Cleanup.",
        "diff": String::from_utf8(airlock_diff::render(
            "bin/price",
            "bin/price",
            Some(PRICE.as_bytes()),
            Some(broken_price.as_bytes()),
            0o100755,
            0o100755,
        ))?,
    });
    let mut views = Vec::new();
    for body in [good, bad] {
        let created: serde_json::Value = client.post("/v1/changes", &body)?;
        let id = created["id"]
            .as_str()
            .context("no change id in the server's answer")?;
        views.push(wait_for_decision(client, id, progress)?);
    }
    let bad = views.pop().expect("two changes");
    let good = views.pop().expect("two changes");
    Ok((good, bad))
}

/// Polls a change until it reaches one of `states` (or a final state).
fn wait_until(client: &Client, id: &str, states: &[ChangeState]) -> anyhow::Result<ChangeView> {
    let deadline = Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let view: ChangeView = client.get(&format!("/v1/changes/{id}?wait=2"))?;
        if states.contains(&view.state) || view.state.is_final() {
            return Ok(view);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{id} stayed in {} for 3 minutes",
            view.state
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Requests to the proxy from two threads while the demo runs, so canaries have traffic.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: std::net::SocketAddr) -> Load {
        use std::io::{Read, Write};
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match std::net::TcpStream::connect(addr) {
                            Ok(mut stream) => {
                                let _ = stream
                                    .set_read_timeout(Some(std::time::Duration::from_secs(5)));
                                let _ = stream.write_all(
                                    b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n",
                                );
                                let _ = stream.read_to_end(&mut Vec::new());
                            }
                            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
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

fn operator_actor() -> Actor {
    Actor {
        kind: ActorKind::Human,
        name: "demo".into(),
        token_id: None,
    }
}
