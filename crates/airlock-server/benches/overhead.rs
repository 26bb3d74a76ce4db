//! End-to-end gate overhead: propose → Level 1 verdict with the check command `true`,
//! against the same steps done by hand with git in an already checked-out tree
//! (resolve the base, `git apply --check`, `git apply`, run `true`, `git apply -R`).
//!
//! Run: `cargo bench -p airlock-server --bench overhead` (FILES=N to change the
//! repository size, ITERATIONS=N for the sample count). Prints medians, p90s and ratios;
//! the target is airlock ≤ 2× the bare git steps. Each proposal is timed on an idle
//! server; back-to-back proposals also pay for the previous workspace's reset.

use std::process::Command;
use std::time::{Duration, Instant};

use airlock_core::config::Config;
use airlock_core::event::Actor;
use airlock_core::ids::Role;
use airlock_server::ServiceOptions;
use airlock_store::SqliteStore;

mod support;
use support::{env_number, generate, git};

/// Untimed pause between proposals, longer than a workspace reset of 20 000 files.
const IDLE_BETWEEN_MS: u64 = 600;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn patch(i: usize) -> String {
    let n = i % 100;
    format!(
        "--- a/src/d{:03}/f{n}.txt\n+++ b/src/d{:03}/f{n}.txt\n@@ -1,3 +1,3 @@\n file {n}\n-line two\n+line two, edit {i}\n line three\n",
        n % 200,
        n % 200
    )
}

fn main() {
    let files = env_number("FILES", 20_000);
    let iterations = env_number("ITERATIONS", 30);
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let root = dir.path().join("repo");
    eprintln!("generating a {files}-file repository...");
    generate(&root, files);

    // The bare git steps, in a second checkout of the same repository.
    let bare_root = dir.path().join("bare");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            root.to_str().unwrap(),
            bare_root.to_str().unwrap(),
        ],
    );
    let bwrap = Command::new("bwrap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    // The bare steps, with `true` run plainly and, for reference, under bubblewrap with
    // the isolation airlock uses (so the sandbox's own start-up cost is visible).
    let tree = bare_root.to_str().unwrap().to_owned();
    let plain = vec!["sh", "-c", "true"];
    let sandboxed = vec![
        "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--bind",
        &tree,
        &tree,
        "--chdir",
        &tree,
        "sh",
        "-c",
        "true",
    ];
    let mut bare_runs = vec![("bare git steps + `true`", plain)];
    if bwrap {
        bare_runs.push(("bare git steps + `true` under bwrap (reference)", sandboxed));
    }
    let mut rows = Vec::new();
    for (name, check) in bare_runs {
        let mut samples = Vec::new();
        for i in 0..iterations + 3 {
            let patch_path = dir.path().join("change.diff");
            std::fs::write(&patch_path, patch(i)).unwrap();
            let p = patch_path.to_str().unwrap();
            let started = Instant::now();
            git(&bare_root, &["rev-parse", "--verify", "main^{commit}"]);
            git(&bare_root, &["apply", "--check", p]);
            git(&bare_root, &["apply", p]);
            let status = Command::new(check[0])
                .args(&check[1..])
                .current_dir(&bare_root)
                .status()
                .unwrap();
            assert!(status.success(), "{name}");
            git(&bare_root, &["apply", "-R", p]);
            if i >= 3 {
                samples.push(started.elapsed());
            }
        }
        rows.push((name.to_owned(), samples));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut breakdown = Vec::new();
    for sandbox in ["off", "required"] {
        if sandbox == "required" && !bwrap {
            eprintln!(
                "bwrap missing: skipping the sandboxed run (install the Debian package `bubblewrap`)"
            );
            continue;
        }
        // Every sample stays awaiting review, so the per-agent limits must cover them all.
        let config_text = format!(
            "[checks]\nsandbox = '{sandbox}'\ncommands = [{{ name = 'test', run = 'true' }}]\n\
             [limits]\nagent_changes_in_flight = {runs}\nagent_proposals_per_hour = {runs}\n",
            runs = iterations + 3
        );
        let config = Config::parse(&config_text, "airlock.toml").unwrap();
        let state_dir = root.join(".airlock");
        let _ = std::fs::remove_dir_all(&state_dir);
        std::fs::create_dir_all(&state_dir).unwrap();
        let (running, token) = runtime.block_on(async {
            let store = SqliteStore::open(&state_dir.join("airlock.db"))
                .await
                .unwrap();
            let token = airlock_server::tokens::issue(
                &store,
                "bench",
                Role::Agent,
                None,
                &[],
                Actor::system("bench"),
                0,
            )
            .await
            .unwrap()
            .secret;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let options = ServiceOptions {
                repo_root: root.clone(),
                state_dir: state_dir.clone(),
                config,
                bwrap_path: None,
                clock: std::sync::Arc::new(airlock_server::SystemClock),
            };
            (
                airlock_server::start(options, store, listener)
                    .await
                    .unwrap(),
                token,
            )
        });
        let url = format!("http://{}", running.addr);
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut samples = Vec::new();
        let mut intake = Vec::new();
        let mut check = Vec::new();
        for i in 0..iterations + 3 {
            let started = Instant::now();
            let created: serde_json::Value = http
                .post(format!("{url}/v1/changes"))
                .header("Authorization", format!("Bearer {token}"))
                .send_json(serde_json::json!({ "title": "bench", "diff": patch(i) }))
                .unwrap()
                .body_mut()
                .read_json()
                .unwrap();
            let id = created["id"].as_str().expect("accepted").to_owned();
            let accepted = started.elapsed();
            let step_ms = loop {
                let view: serde_json::Value = http
                    .get(format!("{url}/v1/changes/{id}?wait=10"))
                    .header("Authorization", format!("Bearer {token}"))
                    .call()
                    .unwrap()
                    .body_mut()
                    .read_json()
                    .unwrap();
                match view["state"].as_str().unwrap() {
                    "awaiting_review" => {
                        break view["steps"]
                            .as_array()
                            .and_then(|steps| steps.iter().find(|step| step["name"] == "test"))
                            .and_then(|step| step["duration_ms"].as_u64())
                            .unwrap_or(0);
                    }
                    "queued" | "checking" | "checks_passed" => {}
                    other => panic!("unexpected state {other}: {view}"),
                }
            };
            if i >= 3 {
                samples.push(started.elapsed());
                intake.push(accepted);
                check.push(Duration::from_millis(step_ms));
            }
            // Latency on an idle server: the workspace reset that follows each verdict
            // (O(repository), measured by the workspace benchmark) finishes between samples.
            std::thread::sleep(Duration::from_millis(IDLE_BETWEEN_MS));
        }
        runtime.block_on(running.shutdown());
        rows.push((
            format!("airlock propose → verdict, sandbox = {sandbox}"),
            samples,
        ));
        breakdown.push(format!(
            "  sandbox = {sandbox}: intake (POST answered) median {}, the check `true` median {} (the scan step runs too)",
            ms(percentile(&mut intake, 0.5)),
            ms(percentile(&mut check, 0.5)),
        ));
    }

    println!(
        "\nEnd-to-end gate overhead, 1-file change, {files}-file repository, {iterations} runs each"
    );
    println!(
        "{:<52} {:>10} {:>10} {:>10}",
        "method", "median", "p90", "× bare"
    );
    let bare_median = percentile(&mut rows[0].1.clone(), 0.5);
    let mut ratios = Vec::new();
    for (name, samples) in &mut rows {
        let median = percentile(samples, 0.5);
        let p90 = percentile(samples, 0.9);
        let ratio = median.as_secs_f64() / bare_median.as_secs_f64();
        println!(
            "{name:<52} {:>10} {:>10} {:>9.2}×",
            ms(median),
            ms(p90),
            ratio
        );
        ratios.push((name.clone(), ratio));
    }
    println!("of which:");
    for line in &breakdown {
        println!("{line}");
    }
    for (name, ratio) in ratios
        .iter()
        .filter(|(name, _)| name.starts_with("airlock"))
    {
        println!(
            "target ≤ 2× bare: {name}: {}",
            if *ratio <= 2.0 { "met" } else { "NOT met" }
        );
    }
}
