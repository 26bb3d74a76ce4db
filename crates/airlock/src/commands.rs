//! One small function per command. Each returns an [`Outcome`] or an error; `main`
//! turns that into the exit code.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_core::change::ChangeState;
use airlock_core::config::{self, Config};
use airlock_core::event::{Actor, ActorKind, EventKind, NewEvent};
use airlock_core::ids::{Role, TokenId};
use airlock_git::Repo;
use airlock_server::ChangeView;
use airlock_store::{SqliteStore, Store};
use anyhow::{Context, bail};

use crate::Outcome;
use crate::cli::{
    Args, CanaryCommand, ClientArgs, Command, ProposeArgs, ReviewCommand, RolloutCommand,
    TokenCommand,
};
use crate::client::Client;

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let cwd = match &args.repo {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    match args.command {
        Command::Init {
            target_branch,
            force,
            json,
        } => init(&cwd, target_branch, force, json),
        Command::Serve { listen } => serve(&cwd, listen),
        Command::Token(command) => token(&cwd, command),
        Command::Propose(propose_args) => propose(propose_args),
        Command::Status { id, client, json } => status(&id, &client, json),
        Command::Review(command) => review(command),
        Command::BreakGlass {
            id,
            reason,
            client,
            json,
        } => {
            let id: airlock_core::ids::ChangeId = id.parse().map_err(anyhow::Error::msg)?;
            let answer: serde_json::Value = connect(&client)?.post(
                &format!("/v1/changes/{id}/break-glass"),
                &serde_json::json!({ "reason": reason }),
            )?;
            print_answer(&answer, json, || {
                format!(
                    "{id} is urgent; state {}",
                    answer["state"].as_str().unwrap_or("?")
                )
            })
        }
        Command::Pause {
            reason,
            client,
            json,
        } => {
            let answer: serde_json::Value =
                connect(&client)?.post("/v1/pause", &serde_json::json!({ "reason": reason }))?;
            print_answer(&answer, json, || {
                "deployments paused: changes wait in the queue until `airlock resume`".to_owned()
            })
        }
        Command::Queue { client, json } => queue(&client, json),
        Command::Rollback {
            id,
            reason,
            no_wait,
            client,
            json,
        } => rollback(&id, &reason, no_wait, &client, json),
        Command::Rollout(RolloutCommand::Continue {
            id,
            reason,
            client,
            json,
        }) => {
            let id: airlock_core::ids::ChangeId = id.parse().map_err(anyhow::Error::msg)?;
            let answer: serde_json::Value = connect(&client)?.post(
                &format!("/v1/changes/{id}/rollout"),
                &serde_json::json!({ "action": "continue", "reason": reason }),
            )?;
            print_answer(&answer, json, || {
                format!("{id}: the rollout goes on past the judge's hold")
            })
        }
        Command::Rollout(RolloutCommand::Abort {
            id,
            reason,
            no_wait,
            client,
            json,
        }) => abort_rollout(&id, &reason, no_wait, &client, json),
        Command::SampleService {
            port,
            config,
            version,
        } => sample_service(port, &config, version),
        Command::Resume {
            target,
            client,
            json,
        } => {
            let path = match &target {
                None => "/v1/pause".to_owned(),
                Some(target) => format!("/v1/pause?target={}", query_value(target)),
            };
            let answer: serde_json::Value = connect(&client)?.delete(&path)?;
            print_answer(&answer, json, || match &target {
                None => "deployments resumed".to_owned(),
                Some(target) => format!("deployments to {target} resumed"),
            })
        }
        Command::List {
            state,
            limit,
            client,
            json,
        } => list(state.as_deref(), limit, &client, json),
        Command::Scan {
            patch,
            format,
            json,
        } => {
            let format = if json {
                crate::cli::ScanFormat::Json
            } else {
                format
            };
            crate::scan::run(&cwd, &patch, format)
        }
        Command::Audit(command) => crate::audit::run(&cwd, command),
        Command::Canary(CanaryCommand::Replay { file, json }) => {
            crate::canary::replay(&cwd.join(file), json)
        }
        Command::Demo { json, keep } => crate::demo::run(json, keep),
    }
}

/// `text` percent-encoded for a query string: letters, digits and `-_.~` stay as they are.
fn query_value(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The repository containing `dir` and its validated configuration.
/// Reads a patch from a file, or from standard input for `-`.
pub fn read_patch(patch: &str) -> anyhow::Result<Vec<u8>> {
    if patch == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the patch from standard input")?;
        Ok(bytes)
    } else {
        std::fs::read(patch).with_context(|| format!("cannot read {patch}"))
    }
}

pub fn load(dir: &Path) -> anyhow::Result<(Repo, Config)> {
    let repo = Repo::open(dir)?;
    let path = repo.root().join(config::FILE_NAME);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}; run `airlock init` in the repository first",
            path.display()
        )
    })?;
    let config = Config::parse(&text, &path.display().to_string())?;
    Ok((repo, config))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn init(
    dir: &Path,
    target_branch: Option<String>,
    force: bool,
    json: bool,
) -> anyhow::Result<Outcome> {
    let repo = Repo::open(dir)?;
    let root = repo.root().to_path_buf();
    let path = root.join(config::FILE_NAME);
    if path.exists() && !force {
        bail!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        );
    }
    let branch = match target_branch {
        Some(branch) => branch,
        None => repo.current_branch()?.unwrap_or_else(|| "main".to_owned()),
    };
    let checks = detect_checks(&root);
    let text = config::default_file_text(&branch, &checks);
    // Validate before writing: a bad --target-branch must not leave a broken file behind.
    Config::parse(&text, config::FILE_NAME)?;
    let state = airlock_server::state_dir(&root);
    std::fs::create_dir_all(&state)
        .with_context(|| format!("cannot create {}", state.display()))?;
    // A self-ignoring state directory: nothing in the user's own .gitignore changes.
    std::fs::write(
        state.join(".gitignore"),
        "# airlock's state: never committed.\n*\n",
    )?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    // The review policy: written once, never overwritten (it is the operator's to edit).
    let policy_path = root.join(&Config::default().review.policy);
    let policy_written = !policy_path.exists();
    if policy_written {
        std::fs::write(&policy_path, airlock_policy::DEFAULT_POLICY)
            .with_context(|| format!("cannot write {}", policy_path.display()))?;
    }
    let audit_dir = airlock_server::audit::audit_dir(&state);
    let (key, created) =
        airlock_audit::keys::load_or_create(&audit_dir, &airlock_server::audit::log_name(&root))?;
    if json {
        let answer = serde_json::json!({
            "config": path,
            "target_branch": branch,
            "checks": checks.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            "state_dir": state,
            "policy": { "path": policy_path, "written": policy_written },
            "audit_key": {
                "name": key.name(),
                "created": created,
                "verifier": key.verifier().to_text(),
            },
        });
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(Outcome::Success);
    }
    println!("wrote {}", path.display());
    println!("state directory {} (git-ignored)", state.display());
    println!(
        "review policy {} {} (Rego; its comments document the input and the obligations)",
        policy_path.display(),
        if policy_written { "written" } else { "kept" }
    );
    println!(
        "audit log key {} {}; its public half, to keep where auditors can find it:",
        key.name(),
        if created { "created" } else { "kept" }
    );
    println!("  {}", key.verifier().to_text());
    if checks.is_empty() {
        println!("no test command detected: add yours under [checks] commands");
    }
    println!("next: `airlock token create --role agent --name NAME`, then `airlock serve`");
    Ok(Outcome::Success)
}

/// Check commands for the kinds of project airlock recognizes by their manifest.
fn detect_checks(root: &Path) -> Vec<(&'static str, &'static str)> {
    let has = |name: &str| root.join(name).exists();
    if has("Cargo.toml") {
        vec![
            ("test", "cargo test --offline"),
            ("format", "cargo fmt --check"),
        ]
    } else if has("package.json") {
        vec![("test", "npm test")]
    } else if has("pyproject.toml") || has("setup.py") || has("pytest.ini") {
        vec![("test", "python3 -m pytest -q")]
    } else if has("go.mod") {
        vec![("test", "go test ./..."), ("vet", "go vet ./...")]
    } else if has("Makefile") {
        vec![("test", "make test")]
    } else {
        Vec::new()
    }
}

fn database_path(repo: &Repo, config: &Config) -> PathBuf {
    repo.root().join(&config.server.database)
}

fn serve(dir: &Path, listen: Option<String>) -> anyhow::Result<Outcome> {
    let (repo, config) = load(dir)?;
    let root = repo.root().to_path_buf();
    let state_dir = airlock_server::state_dir(&root);
    std::fs::create_dir_all(&state_dir)?;
    // SQLite belongs to one server: a second one on the same state would steal its leases.
    let lock = std::fs::File::create(state_dir.join("serve.lock"))?;
    if lock.try_lock().is_err() {
        bail!(
            "another `airlock serve` is already running for {}",
            root.display()
        );
    }
    let listen = listen.unwrap_or_else(|| config.server.listen.clone());
    let database = database_path(&repo, &config);
    runtime()?.block_on(async move {
        let store = SqliteStore::open(&database)
            .await
            .with_context(|| format!("cannot open {}", database.display()))?;
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let options = airlock_server::ServiceOptions {
            repo_root: root,
            state_dir,
            config,
            bwrap_path: None,
            clock: std::sync::Arc::new(airlock_server::SystemClock),
        };
        let running = airlock_server::start(options, store, listener).await?;
        eprintln!("airlock listening on http://{}", running.addr);
        shutdown_signal().await;
        eprintln!("shutting down: in-flight checks stop now and resume at the next start");
        running.shutdown().await;
        drop(lock);
        Ok(Outcome::Success)
    })
}

async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated => {}
    }
}

/// Records a purge of audit payloads as an event, which the server's follower turns into
/// an audit entry (at once when it runs, else at its next start).
pub(crate) fn record_audit_purge(dir: &Path, data: serde_json::Value) -> anyhow::Result<()> {
    let (repo, config) = load(dir)?;
    let database = database_path(&repo, &config);
    runtime()?.block_on(async move {
        let store = SqliteStore::open(&database)
            .await
            .with_context(|| format!("cannot open {}", database.display()))?;
        store
            .append_event(&NewEvent {
                change_id: None,
                at_ms: airlock_server::now_ms(),
                actor: local_actor(),
                kind: EventKind::AuditPurged,
                data,
            })
            .await?;
        Ok(())
    })
}

/// Local administration acts as the operating system user running the command.
fn local_actor() -> Actor {
    let name = std::env::var("USER")
        .ok()
        .filter(|n| airlock_core::ids::validate_name(n).is_ok());
    Actor {
        kind: ActorKind::Human,
        name: format!("local:{}", name.as_deref().unwrap_or("unknown")),
        token_id: None,
    }
}

fn token(dir: &Path, command: TokenCommand) -> anyhow::Result<Outcome> {
    let (repo, config) = load(dir)?;
    let database = database_path(&repo, &config);
    if let Some(parent) = database.parent() {
        std::fs::create_dir_all(parent)?;
    }
    runtime()?.block_on(async move {
        let store = SqliteStore::open(&database).await.with_context(|| format!("cannot open {}", database.display()))?;
        let outcome = match command {
            TokenCommand::Create { role, name, owner, groups, json } => {
                let role: Role = role.parse().map_err(anyhow::Error::msg)?;
                let issued =
                    airlock_server::tokens::issue(&store, &name, role, owner.as_deref(), &groups, local_actor(), airlock_server::now_ms())
                        .await?;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "id": issued.record.id, "name": name, "role": role, "token": issued.secret })
                    );
                } else {
                    eprintln!("created {} for {name} ({role}); the token is shown once:", issued.record.id);
                    println!("{}", issued.secret);
                }
                Outcome::Success
            }
            TokenCommand::List { json } => {
                let tokens = store.list_tokens().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&tokens)?);
                } else {
                    println!("{:<18} {:<9} {:<24} {:<8} OWNER/GROUPS", "ID", "ROLE", "NAME", "STATUS");
                    for t in tokens {
                        let status = if t.revoked_at_ms.is_some() { "revoked" } else { "active" };
                        let extra = t.owner.clone().map(|o| format!("owner {o}")).unwrap_or_else(|| t.groups.join(" "));
                        println!("{:<18} {:<9} {:<24} {status:<8} {extra}", t.id.as_str(), t.role.as_str(), t.name);
                    }
                }
                Outcome::Success
            }
            TokenCommand::Revoke { id, json } => {
                let id: TokenId = id.parse().map_err(anyhow::Error::msg)?;
                if !airlock_server::tokens::revoke(&store, &id, local_actor(), airlock_server::now_ms()).await? {
                    bail!("no active token {id}");
                }
                if json {
                    println!("{}", serde_json::json!({ "revoked": id }));
                } else {
                    println!("revoked {id}");
                }
                Outcome::Success
            }
        };
        store.close().await;
        Ok(outcome)
    })
}

fn connect(client: &ClientArgs) -> anyhow::Result<Client> {
    Client::new(&client.server, client.token.as_deref())
}

fn print_answer(
    answer: &serde_json::Value,
    json: bool,
    text: impl FnOnce() -> String,
) -> anyhow::Result<Outcome> {
    if json {
        println!("{answer}");
    } else {
        println!("{}", text());
    }
    Ok(Outcome::Success)
}

fn review(command: ReviewCommand) -> anyhow::Result<Outcome> {
    let (id, verdict, comment, client, json) = match command {
        ReviewCommand::Approve {
            id,
            comment,
            client,
            json,
        } => (id, "approve", comment, client, json),
        ReviewCommand::Reject {
            id,
            comment,
            client,
            json,
        } => (id, "reject", comment, client, json),
        ReviewCommand::RequestChanges {
            id,
            comment,
            client,
            json,
        } => (id, "request_changes", comment, client, json),
        ReviewCommand::List { client, json } => {
            let queue: serde_json::Value = connect(&client)?.get("/v1/reviews")?;
            return print_answer(&queue, json, || {
                let mut out = format!(
                    "{:<31} {:<9} {:<16} {:<40} TITLE",
                    "ID", "RISK", "AGENT", "NEEDS"
                );
                for item in queue.as_array().into_iter().flatten() {
                    let review = &item["review"];
                    let missing: Vec<&str> = strings(&review["missing"]);
                    out.push_str(&format!(
                        "\n{:<31} {:<9} {:<16} {:<40} {}",
                        item["id"].as_str().unwrap_or("?"),
                        review["obligations"]["risk"].as_str().unwrap_or("?"),
                        item["agent"]["name"].as_str().unwrap_or("?"),
                        missing.join(", "),
                        item["title"].as_str().unwrap_or("")
                    ));
                }
                out
            });
        }
        ReviewCommand::PostReviews {
            overdue,
            client,
            json,
        } => {
            let list: serde_json::Value =
                connect(&client)?.get(&format!("/v1/post-reviews?overdue={overdue}"))?;
            return print_answer(&list, json, || {
                let mut out = format!("{:<31} {:<10} {:<22} REASON", "CHANGE", "STATUS", "DUE");
                for item in list.as_array().into_iter().flatten() {
                    let status = if !item["completed_at_ms"].is_null() {
                        "done"
                    } else if !item["overdue_at_ms"].is_null() {
                        "OVERDUE"
                    } else {
                        "open"
                    };
                    out.push_str(&format!(
                        "\n{:<31} {status:<10} {:<22} {}",
                        item["change_id"].as_str().unwrap_or("?"),
                        airlock_core::units::rfc3339_utc(item["due_at_ms"].as_i64().unwrap_or(0)),
                        item["reason"].as_str().unwrap_or("")
                    ));
                }
                out
            });
        }
    };
    let id: airlock_core::ids::ChangeId = id.parse().map_err(anyhow::Error::msg)?;
    let answer: serde_json::Value = connect(&client)?.post(
        &format!("/v1/changes/{id}/reviews"),
        &serde_json::json!({ "verdict": verdict, "comment": comment }),
    )?;
    print_answer(&answer, json, || {
        let missing: Vec<&str> = strings(&answer["missing"]);
        if answer["post_review_completed"].as_bool() == Some(true) {
            format!("{id}: post-deployment review completed")
        } else if missing.is_empty() {
            format!("{id}: {}", answer["state"].as_str().unwrap_or("?"))
        } else {
            format!(
                "{id}: {}; still needs {}",
                answer["state"].as_str().unwrap_or("?"),
                missing.join(", ")
            )
        }
    })
}

fn propose(args: ProposeArgs) -> anyhow::Result<Outcome> {
    let client = Client::new(&args.client.server, args.client.token.as_deref())?;
    let mut body = match &args.revise {
        Some(_) => serde_json::json!({}),
        None => serde_json::json!({ "title": args.title, "description": args.description }),
    };
    if args.urgent {
        body["urgent"] = serde_json::json!({ "reason": args.reason });
    }
    if let Some(base) = &args.base {
        body["base"] = base.clone().into();
    }
    if let Some(patch) = &args.patch {
        let bytes = read_patch(patch)?;
        let text = String::from_utf8(bytes)
            .context("the patch is not UTF-8 text; binary content must be in `git diff --binary` form or proposed with --ref")?;
        body["diff"] = text.into();
    } else if let Some(path) = &args.edits {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let edits: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON (a list of edits)", path.display()))?;
        body["edits"] = edits;
    } else if let Some(git_ref) = &args.git_ref {
        body["ref"] = git_ref.clone().into();
    }
    let path = match &args.revise {
        Some(id) => {
            let id: airlock_core::ids::ChangeId = id.parse().map_err(anyhow::Error::msg)?;
            format!("/v1/changes/{id}/revisions")
        }
        None => "/v1/changes".to_owned(),
    };
    let created: serde_json::Value = client.post(&path, &body)?;
    let id = created["id"]
        .as_str()
        .context("the server's answer has no change id")?
        .to_owned();
    if !args.wait {
        if args.json {
            println!("{created}");
        } else {
            println!(
                "{id} revision {} queued ({} files, +{} -{})",
                created["revision"],
                created["files"],
                created["lines_added"],
                created["lines_removed"]
            );
        }
        return Ok(Outcome::Success);
    }
    let view = wait_for_decision(&client, &id, !args.json)?;
    report(&view, args.json)
}

/// Polls a change until Level 1 and the policy decide (the change then waits for a
/// reviewer, or is approved, rejected or failed), showing progress on a terminal.
pub fn wait_for_decision(client: &Client, id: &str, progress: bool) -> anyhow::Result<ChangeView> {
    let bar = if progress && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        Some(bar)
    } else {
        None
    };
    loop {
        // Long poll: the server answers as soon as the change moves, or after 2 s.
        let view: ChangeView = client.get(&format!("/v1/changes/{id}?wait=2"))?;
        if let Some(bar) = &bar {
            let step = view
                .steps
                .last()
                .map(|s| format!(", last step: {} ({:?})", s.name, s.status))
                .unwrap_or_default();
            bar.set_message(format!("{id}: {}{step}", view.state));
        }
        if !view.state.needs_worker() {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            return Ok(view);
        }
    }
}

fn report(view: &ChangeView, json: bool) -> anyhow::Result<Outcome> {
    if json {
        println!("{}", serde_json::to_string_pretty(view)?);
    } else {
        print_change(view);
    }
    Ok(match view.state {
        ChangeState::Rejected | ChangeState::Failed | ChangeState::Expired => Outcome::Rejected,
        _ => Outcome::Success,
    })
}

fn queue(client_args: &ClientArgs, json: bool) -> anyhow::Result<Outcome> {
    let answer: serde_json::Value = connect(client_args)?.get("/v1/queue")?;
    print_answer(&answer, json, || {
        let mut text = format!(
            "target {} ({} provider), stable {}{}\n",
            answer["target"].as_str().unwrap_or("?"),
            answer["provider"].as_str().unwrap_or("?"),
            answer["stable"]["commit"].as_str().unwrap_or("(none yet)"),
            if answer["paused"].is_null() {
                ""
            } else {
                ", PAUSED"
            }
        );
        for staging in answer["staging"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "  staging  {}  {}\n",
                staging["id"].as_str().unwrap_or("?"),
                staging["title"].as_str().unwrap_or("")
            ));
        }
        let entries = answer["queue"].as_array().cloned().unwrap_or_default();
        if entries.is_empty() {
            text.push_str("  the queue is empty\n");
        }
        for entry in entries {
            let deployment = &entry["deployment"];
            let step = deployment["step"].as_i64().unwrap_or(-1);
            text.push_str(&format!(
                "  {:>2}. {}  {:<13} {}{}\n",
                entry["position"],
                entry["id"].as_str().unwrap_or("?"),
                entry["state"].as_str().unwrap_or("?"),
                entry["title"].as_str().unwrap_or(""),
                if step >= 0 {
                    format!(" (steps done: {})", step + 1)
                } else {
                    String::new()
                }
            ));
        }
        text.trim_end().to_owned()
    })
}

fn rollback(
    id: &str,
    reason: &str,
    no_wait: bool,
    client_args: &ClientArgs,
    json: bool,
) -> anyhow::Result<Outcome> {
    let body = serde_json::json!({ "reason": reason });
    let request = ("rollback", body, "rollback requested");
    request_rollback(id, request, no_wait, client_args, json)
}

/// Stops a rollout under way; like `airlock rollback`, waits for the rollback unless told not to.
fn abort_rollout(
    id: &str,
    reason: &str,
    no_wait: bool,
    client_args: &ClientArgs,
    json: bool,
) -> anyhow::Result<Outcome> {
    let body = serde_json::json!({ "action": "abort", "reason": reason });
    let request = ("rollout", body, "rollout abort requested");
    request_rollback(id, request, no_wait, client_args, json)
}

/// Posts `body` to the change's `endpoint` (`rollback`, `rollout`), then waits for the
/// rollback unless `no_wait` (which prints `requested`).
fn request_rollback(
    id: &str,
    (endpoint, body, requested): (&str, serde_json::Value, &str),
    no_wait: bool,
    client_args: &ClientArgs,
    json: bool,
) -> anyhow::Result<Outcome> {
    let id: airlock_core::ids::ChangeId = id.parse().map_err(anyhow::Error::msg)?;
    let client = connect(client_args)?;
    let answer: serde_json::Value = client.post(&format!("/v1/changes/{id}/{endpoint}"), &body)?;
    if no_wait {
        return print_answer(&answer, json, || format!("{id}: {requested}"));
    }
    wait_for_rollback(&client, &id, json)
}

/// Follows a change until its rollback (or the deployment it stops) ends: exit 1 when
/// rolled back, an error when the rollback could not complete.
fn wait_for_rollback(
    client: &Client,
    id: &airlock_core::ids::ChangeId,
    json: bool,
) -> anyhow::Result<Outcome> {
    let view = loop {
        let view: ChangeView = client.get(&format!("/v1/changes/{id}?wait=2"))?;
        if !matches!(
            view.state,
            ChangeState::RollingBack | ChangeState::Deploying
        ) {
            break view;
        }
    };
    report(&view, json)?;
    match view.state {
        ChangeState::RolledBack => Ok(Outcome::Rejected),
        ChangeState::RollbackEscalated | ChangeState::Failed => anyhow::bail!(
            "the rollback of {id} did not complete: {}",
            view.verdict
                .as_ref()
                .map(|v| v.summary.as_str())
                .unwrap_or("see `airlock status`")
        ),
        _ => Ok(Outcome::Success),
    }
}

/// The demo's service: blocks serving until killed.
fn sample_service(port: u16, config: &std::path::Path, version: String) -> anyhow::Result<Outcome> {
    let behaviour = airlock_proxy::sample::SampleBehaviour::read(config)?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    airlock_proxy::sample::run(listener, behaviour, version)?;
    Ok(Outcome::Success)
}

pub fn print_change(view: &ChangeView) {
    println!("{}  {}", view.id, view.state);
    println!("  title:  {}", view.title);
    println!("  agent:  {} ({:?})", view.agent.name, view.agent.kind);
    println!("  base:   {} ({})", view.base_commit, view.target_branch);
    println!(
        "  files:  {} (+{} -{})",
        view.files.len(),
        view.lines_added,
        view.lines_removed
    );
    for file in &view.files {
        println!(
            "    {:<7} {}",
            format!("{:?}", file.op).to_lowercase(),
            file.path()
        );
    }
    for step in &view.steps {
        println!(
            "  step {} {:<12} {:?} exit={} {} ms",
            step.index,
            step.name,
            step.status,
            step.exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            step.duration_ms
        );
    }
    if let Some(urgency) = &view.urgency {
        println!(
            "  urgent: break-glass by {}: {}",
            urgency.by.name, urgency.reason
        );
    }
    if let Some(review) = &view.review {
        let obligations = &review["obligations"];
        println!(
            "  review: risk {}, approvals needed {}, approved by [{}]",
            obligations["risk"].as_str().unwrap_or("?"),
            obligations["approvals"],
            strings(&review["approvers"]).join(", ")
        );
        let missing: Vec<&str> = strings(&review["missing"]);
        if !missing.is_empty() {
            println!("  still needs: {}", missing.join(", "));
        }
    }
    if let Some(deployment) = &view.deployment {
        println!(
            "  deploy: target {}, commit {}, steps done {}{}",
            deployment.target,
            deployment.commit_id.as_deref().unwrap_or("(not landed)"),
            deployment.step + 1,
            deployment
                .revert_commit
                .as_deref()
                .map(|r| format!(", reverted by {r}"))
                .unwrap_or_default()
        );
        if let Some(reason) = &deployment.rollback_reason {
            println!("  rollback: {reason}");
        }
    }
    if let Some(canary) = &view.canary {
        print_canary(canary);
    }
    if let Some(verdict) = &view.verdict {
        println!("  verdict: {}", verdict.summary);
        if let Some(isolation) = &verdict.isolation {
            println!("  isolation: {isolation}");
        }
        if let Some(excerpt) = verdict.output_excerpt.as_deref().filter(|e| !e.is_empty()) {
            println!("  output (tail):");
            for line in excerpt
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                println!("    | {line}");
            }
        }
    }
}

fn status(id: &str, client_args: &ClientArgs, json: bool) -> anyhow::Result<Outcome> {
    let id: airlock_core::ids::ChangeId = id.parse().map_err(anyhow::Error::msg)?;
    let client = Client::new(&client_args.server, client_args.token.as_deref())?;
    let view: ChangeView = client.get(&format!("/v1/changes/{id}"))?;
    report(&view, json)
}

fn list(
    state: Option<&str>,
    limit: u32,
    client_args: &ClientArgs,
    json: bool,
) -> anyhow::Result<Outcome> {
    let mut path = format!("/v1/changes?limit={limit}");
    if let Some(state) = state {
        let state: ChangeState = state.parse().map_err(anyhow::Error::msg)?;
        path.push_str(&format!("&state={state}"));
    }
    let client = Client::new(&client_args.server, client_args.token.as_deref())?;
    let views: Vec<ChangeView> = client.get(&path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&views)?);
    } else {
        println!("{:<31} {:<14} {:<16} TITLE", "ID", "STATE", "AGENT");
        for view in views {
            println!(
                "{:<31} {:<14} {:<16} {}",
                view.id.as_str(),
                view.state.as_str(),
                view.agent.name,
                view.title
            );
        }
    }
    Ok(Outcome::Success)
}

/// The strings of a JSON array (none when it is not one).
pub fn strings(value: &serde_json::Value) -> Vec<&str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect()
}

/// The last rollout decision and the evidence behind it: per metric, the counts of the
/// canary and of its reference, the ratio's confidence bounds, the statistic against its
/// bound, α and the margins.
fn print_canary(canary: &serde_json::Value) {
    let judge = &canary["evidence"]["judge"];
    println!(
        "  canary: {} at the {} % step{}",
        canary["decision"].as_str().unwrap_or("?"),
        canary["percent"],
        canary["reason"]
            .as_str()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    for metric in judge["metrics"].as_array().into_iter().flatten() {
        let number = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
        println!(
            "    {}: {} (canary {}/{}, reference {}/{}; ratio in [{:.2}, {:.2}]; ln E {:.2} of {:.2} at α {}; tolerance {}, margins {} / {})",
            metric["name"].as_str().unwrap_or("?"),
            metric["verdict"].as_str().unwrap_or("?"),
            number(&metric["canary"]["events"]),
            number(&metric["canary"]["exposure"]),
            number(&metric["reference"]["events"]),
            number(&metric["reference"]["exposure"]),
            number(&metric["ratio_lower"]),
            number(&metric["ratio_upper"]),
            number(&metric["log_e_value"]),
            number(&metric["log_bound"]),
            number(&metric["alpha"]),
            number(&metric["tolerance"]),
            number(&metric["pass_margin"]),
            number(&metric["absolute_margin"]),
        );
        if let Some(reasoning) = metric["reasoning"].as_str() {
            println!("      {reasoning}");
        }
    }
}
