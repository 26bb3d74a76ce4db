//! Scanner speed: throughput of the full rule pack on one core over generated realistic
//! diffs (default 100 MB), p99 latency for a 100 KB patch with rules loaded, and peers on
//! the same input: detect-secrets and semgrep (PyPI, installed into a virtualenv by this
//! benchmark), and ripgrep searching the rule pack's keywords alone (Debian package
//! `ripgrep`).
//!
//! Run: `cargo bench -p airlock-scan --bench throughput` (SIZE_MB=N for the corpus size, PASSES=N for how many passes the median is taken over,
//! PEER_MB=N for how much of it detect-secrets and semgrep scan; they are slow). Targets
//! (shared/BENCHMARKS.md): ≥ 1 GiB/s, ≥ 1000× detect-secrets, faster than ripgrep on the
//! keywords alone, < 5 ms p99 per 100 KB patch. A peer that cannot be installed or run
//! is reported with the reason; with `CI=true` that is a failure instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use airlock_scan::{RulePack, ScanOptions, Scanner};
use support::{Rng, patch};

mod support;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
}

/// A peer that could not be measured: said why, or, under CI, a failure, so that no
/// figure silently goes missing.
fn peer_unavailable(peer: &str, reason: &str) {
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{peer} could not be measured: {reason}");
    }
    println!("{peer}: not measured: {reason}");
}

/// The last lines of a command's output, for saying why it failed.
fn output_tail(output: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// A PyPI tool in a virtualenv next to the build output, installed once.
fn pypi_tool(package: &str, executable: &str) -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-venv");
    let tool = venv.join("bin").join(executable);
    if tool.exists() {
        return Ok(tool);
    }
    if !venv.join("bin/pip").exists() {
        let created = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .output()
            .map_err(|error| {
                format!("python3 -m venv did not start: {error} (Debian package `python3-venv`)")
            })?;
        if !created.status.success() {
            return Err(format!("python3 -m venv failed: {}", output_tail(&created)));
        }
    }
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", package])
        .output()
        .map_err(|error| format!("pip did not start: {error}"))?;
    if !installed.status.success() || !tool.exists() {
        return Err(format!(
            "pip install {package} failed (PyPI unreachable?): {}",
            output_tail(&installed)
        ));
    }
    Ok(tool)
}

/// The rules given to semgrep: a subset of airlock's, secrets and injections, each
/// translated to a `generic` rule with the same regex (`pattern-regex`; semgrep's PCRE
/// reads these patterns alike).
const SEMGREP_RULES: &[&str] = &[
    "secret.aws-access-key-id",
    "secret.github-token",
    "secret.slack-token",
    "secret.stripe-key",
    "secret.private-key",
    "secret.password-assignment",
    "secret.generic-assignment",
    "sql-injection.go-sprintf",
    "command-injection.os-system",
    "command-injection.node-exec",
    "unsafe-deserialization.pickle",
    "unsafe-deserialization.yaml-load",
    "destructive-op.drop-table",
    "insecure-config.tls-verification-off",
];

fn semgrep_rules(pack: &RulePack) -> String {
    let mut yaml = String::from("rules:\n");
    for id in SEMGREP_RULES {
        let rule = pack.rule(id).expect("a built-in rule");
        let pattern = rule.pattern.as_deref().expect("a line rule");
        // YAML single quotes keep backslashes; a quote is written twice.
        yaml.push_str(&format!(
            "  - id: {id}\n    languages: [generic]\n    severity: ERROR\n    message: '{}'\n    pattern-regex: '{}'\n",
            rule.message.replace('\'', "''"),
            pattern.replace('\'', "''")
        ));
    }
    yaml
}

/// The added lines of a patch, without their `+`: what semgrep, which scans files rather
/// than diffs, is given.
fn added_lines(patch: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in patch.split(|&byte| byte == b'\n') {
        if let Some(text) = line.strip_prefix(b"+")
            && !text.starts_with(b"++ ")
        {
            out.extend_from_slice(text);
            out.push(b'\n');
        }
    }
    out
}

fn ripgrep() -> Result<PathBuf, String> {
    let found = || {
        Command::new("rg")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !found() {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "ripgrep"])
            .status();
    }
    if found() {
        Ok(PathBuf::from("rg"))
    } else {
        Err("not installed and could not be installed (Debian package `ripgrep`)".to_owned())
    }
}

fn main() {
    let size_mb = env_number("SIZE_MB", 100);
    let peer_mb = env_number("PEER_MB", 4);
    let rules = RulePack::builtin();
    let started = Instant::now();
    let scanner = Scanner::new(&rules).expect("the built-in rules compile");
    let compile = started.elapsed();
    let options = ScanOptions::default();

    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let patches: Vec<Vec<u8>> = (0..size_mb * 10)
        .map(|i| patch(&mut rng, 100 << 10, i))
        .collect();
    let total: usize = patches.iter().map(Vec::len).sum();

    // Throughput and per-patch latency, one core (this thread). The machine is shared and
    // noisy: the throughput quoted is the median of `PASSES` passes over every patch, and
    // the latency percentiles are taken over every scan of every pass.
    let passes = env_number("PASSES", 3).max(1);
    let mut latencies = Vec::with_capacity(patches.len() * passes);
    let mut pass_rates = Vec::with_capacity(passes);
    let mut findings = 0;
    for _ in 0..passes {
        findings = 0;
        let started = Instant::now();
        for patch in &patches {
            let one = Instant::now();
            findings += scanner
                .scan(patch, &options)
                .expect("generated patches parse")
                .findings
                .len();
            latencies.push(one.elapsed());
        }
        pass_rates.push(mib_per_s(total, started.elapsed()));
    }
    pass_rates.sort_by(f64::total_cmp);
    let ours_rate = pass_rates[pass_rates.len() / 2];
    let p99 = percentile(&mut latencies, 0.99);

    println!(
        "\nScanner throughput: {} rules, {:.1} MiB of generated diffs in {} patches of ~100 KB",
        rules.rules().len(),
        total as f64 / (1 << 20) as f64,
        patches.len()
    );
    println!(
        "rule pack compiled in {:.1} ms; {findings} findings; median of {passes} passes \
         (slowest {:.1}, fastest {:.1} MiB/s)",
        compile.as_secs_f64() * 1e3,
        pass_rates[0],
        pass_rates[pass_rates.len() - 1]
    );
    println!("{:<44} {:>12} {:>12}", "scanner", "MiB/s", "airlock ×");
    println!(
        "{:<44} {:>12.1} {:>12}",
        "airlock (full rule pack, one core)", ours_rate, "1.0×"
    );
    if std::env::var("PEERS").is_ok_and(|peers| peers == "0") {
        // Profiling runs: our scan alone.
        return;
    }

    // Peers on files holding the same bytes.
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::create_dir_all(dir.path().join("all")).unwrap();
    std::fs::create_dir_all(dir.path().join("peer")).unwrap();
    std::fs::create_dir_all(dir.path().join("added")).unwrap();
    let (mut peer_bytes, mut added_bytes) = (0, 0);
    for (i, patch) in patches.iter().enumerate() {
        std::fs::write(dir.path().join(format!("all/p{i}.diff")), patch).unwrap();
        if peer_bytes + patch.len() <= peer_mb << 20 {
            std::fs::write(dir.path().join(format!("peer/p{i}.diff")), patch).unwrap();
            let added = added_lines(patch);
            std::fs::write(dir.path().join(format!("added/p{i}.txt")), &added).unwrap();
            peer_bytes += patch.len();
            added_bytes += added.len();
        }
    }
    let mut detect_ratio = None;
    match pypi_tool("detect-secrets", "detect-secrets") {
        Ok(tool) => {
            let started = Instant::now();
            let output = Command::new(&tool)
                .arg("scan")
                .arg("--all-files")
                .current_dir(dir.path().join("peer"))
                .output()
                .unwrap();
            let elapsed = started.elapsed();
            assert!(
                output.status.success(),
                "detect-secrets failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let rate = mib_per_s(peer_bytes, elapsed);
            detect_ratio = Some(ours_rate / rate);
            println!(
                "{:<44} {:>12.2} {:>11.0}×",
                format!(
                    "detect-secrets (on {:.1} MiB)",
                    peer_bytes as f64 / (1 << 20) as f64
                ),
                rate,
                ours_rate / rate
            );
        }
        Err(reason) => peer_unavailable("detect-secrets", &reason),
    }
    let mut semgrep_ratio = None;
    match pypi_tool("semgrep", "semgrep") {
        Ok(tool) => {
            let rules_file = dir.path().join("semgrep-rules.yml");
            std::fs::write(&rules_file, semgrep_rules(&rules)).unwrap();
            let version = Command::new(&tool)
                .arg("--version")
                .env("SEMGREP_ENABLE_VERSION_CHECK", "0")
                .output()
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
                .unwrap_or_default();
            let started = Instant::now();
            // Offline and on one core: no metrics, no version check, one job.
            let output = Command::new(&tool)
                .args([
                    "scan",
                    "--metrics=off",
                    "--disable-version-check",
                    "--jobs=1",
                    "--timeout=0",
                    "--max-target-bytes=0",
                    "--no-git-ignore",
                    "--quiet",
                    "--json",
                    "--config",
                ])
                .arg(&rules_file)
                .arg(dir.path().join("added"))
                .env("SEMGREP_ENABLE_VERSION_CHECK", "0")
                .env("SEMGREP_SEND_METRICS", "off")
                .output();
            let elapsed = started.elapsed();
            match output {
                Ok(output)
                    if output.status.success()
                        && String::from_utf8_lossy(&output.stdout).contains("\"errors\":[]") =>
                {
                    let json = String::from_utf8_lossy(&output.stdout);
                    let found = json.matches("\"check_id\"").count();
                    let rate = mib_per_s(peer_bytes, elapsed);
                    semgrep_ratio = Some(ours_rate / rate);
                    println!(
                        "{:<44} {:>12.2} {:>11.0}×",
                        format!(
                            "semgrep {version} (on {:.1} MiB)",
                            peer_bytes as f64 / (1 << 20) as f64
                        ),
                        rate,
                        ours_rate / rate
                    );
                    println!(
                        "  semgrep: {} of airlock's rules as `generic` regex rules ({}), on the \
                         added lines of those patches ({:.1} MiB of text), wall clock with \
                         start-up; {found} findings",
                        SEMGREP_RULES.len(),
                        SEMGREP_RULES.join(", "),
                        added_bytes as f64 / (1 << 20) as f64
                    );
                }
                Ok(output) => peer_unavailable(
                    "semgrep",
                    &format!(
                        "semgrep scan failed or reported errors: {}",
                        output_tail(&output)
                    ),
                ),
                Err(error) => peer_unavailable("semgrep", &format!("did not start: {error}")),
            }
        }
        Err(reason) => peer_unavailable("semgrep", &reason),
    }
    let mut rg_ratio = None;
    match ripgrep() {
        Ok(rg) => {
            let keywords: Vec<String> = rules
                .rules()
                .iter()
                .flat_map(|r| r.keywords.clone())
                .collect();
            let patterns = dir.path().join("keywords.txt");
            std::fs::write(&patterns, keywords.join("\n")).unwrap();
            let started = Instant::now();
            let output = Command::new(rg)
                .args(["--threads", "1", "-i", "-F", "-c", "-f"])
                .arg(&patterns)
                .arg(dir.path().join("all"))
                .output()
                .unwrap();
            let elapsed = started.elapsed();
            assert!(
                output.status.code().is_some_and(|c| c <= 1),
                "ripgrep failed"
            );
            let rate = mib_per_s(total, elapsed);
            rg_ratio = Some(ours_rate / rate);
            println!(
                "{:<44} {:>12.1} {:>11.2}×",
                "ripgrep, rule keywords only (-i -F, 1 thread)",
                rate,
                ours_rate / rate
            );
        }
        Err(reason) => peer_unavailable("ripgrep", &reason),
    }
    println!(
        "\np99 latency per ~100 KB patch: {:.2} ms (median {:.2} ms)",
        p99.as_secs_f64() * 1e3,
        percentile(&mut latencies, 0.5).as_secs_f64() * 1e3
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "target ≥ 1 GiB/s: {} ({:.0} MiB/s)",
        verdict(ours_rate >= 1024.0),
        ours_rate
    );
    if let Some(ratio) = detect_ratio {
        println!(
            "target ≥ 1000× detect-secrets: {} ({ratio:.0}×)",
            verdict(ratio >= 1000.0)
        );
    }
    if let Some(ratio) = semgrep_ratio {
        println!("semgrep (no target set): airlock {ratio:.0}× faster");
    }
    if let Some(ratio) = rg_ratio {
        println!(
            "target faster than ripgrep on the keywords alone: {} ({ratio:.2}×)",
            verdict(ratio > 1.0)
        );
    }
    println!(
        "target < 5 ms p99 per patch: {}",
        verdict(p99 < Duration::from_millis(5))
    );
}
