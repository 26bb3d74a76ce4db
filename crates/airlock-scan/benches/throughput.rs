//! Scanner speed: throughput of the full rule pack on one core, p99 latency for a 100 KB
//! patch with rules loaded, and peers on the same input: detect-secrets and semgrep
//! (PyPI, installed into a virtualenv by this benchmark), and ripgrep searching the rule
//! pack's keywords alone (Debian package `ripgrep`). Two corpora of ~100 MB each: diffs
//! cut from real source files on this machine (the Rust sources of the workspace's locked
//! dependencies and the Python standard library: real code, real paths), and diffs
//! generated from line templates dense in the rules' hot keywords.
//!
//! Run: `cargo bench -p airlock-scan --bench throughput` (SIZE_MB=N for each corpus's
//! size, PASSES=N for how many passes the median is taken over, PEER_MB=N for how much of
//! each detect-secrets and semgrep scan, they are slow; PEERS=0 for ours alone;
//! CORPUS=real or CORPUS=templates for one corpus). Targets
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

/// Where Cargo keeps the sources of downloaded crates: `$CARGO_HOME/registry/src`.
fn registry_sources() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))?;
    let src = home.join("registry/src");
    let mut indexes: Vec<PathBuf> = std::fs::read_dir(src)
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    indexes.sort();
    indexes.into_iter().next()
}

/// Files under `dir` whose names end with `extension`, sorted.
fn files_under(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            files_under(&path, extension, out);
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
}

/// The source files of real projects on this machine: the Rust sources of this
/// workspace's locked dependencies (in Cargo's registry after any build, the same
/// versions on every machine) and the Python standard library of Debian's `python3`.
fn real_source_files() -> (Vec<PathBuf>, String) {
    let mut files = Vec::new();
    let mut parts = Vec::new();
    let lock =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock"))
            .unwrap_or_default();
    if let Some(registry) = registry_sources() {
        let mut crates = 0;
        for package in lock.split("[[package]]") {
            let field = |key: &str| {
                package.lines().find_map(|line| {
                    line.strip_prefix(key)
                        .and_then(|rest| rest.strip_prefix(" = \""))
                        .and_then(|rest| rest.strip_suffix('"'))
                })
            };
            if let (Some(name), Some(version), Some(_)) =
                (field("name"), field("version"), field("source"))
            {
                let dir = registry.join(format!("{name}-{version}"));
                if dir.is_dir() {
                    crates += 1;
                    files_under(&dir, "rs", &mut files);
                }
            }
        }
        parts.push(format!("Rust of {crates} locked crates"));
    }
    let rust = files.len();
    let mut pythons: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|path| {
                    path.file_name().is_some_and(|name| {
                        let name = name.to_string_lossy();
                        name.starts_with("python3.")
                            && name[8..].bytes().all(|b| b.is_ascii_digit())
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    pythons.sort();
    if let Some(python) = pythons.last() {
        files_under(python, "py", &mut files);
        parts.push(format!(
            "Python of {}",
            python.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    let description = format!(
        "{} ({rust} + {} files)",
        parts.join(" and "),
        files.len() - rust
    );
    (files, description)
}

/// Hunks cut from one file at most.
const MAX_HUNKS: usize = 200;

/// Diffs cut from real source files, in patches of about 100 KB: every file gives up to
/// `MAX_HUNKS` hunks along its length, each three lines of context, up to three removed lines and
/// four to fifteen added ones, all the file's own consecutive lines.
fn real_source_patches(size: usize) -> (Vec<Vec<u8>>, String) {
    let (mut files, description) = real_source_files();
    let mut rng = Rng(0x0dd_c0de_5eed_0001);
    // A fixed shuffle, so that patches mix crates and languages.
    for index in (1..files.len()).rev() {
        files.swap(index, (rng.next() % (index as u64 + 1)) as usize);
    }
    let mut patches = Vec::new();
    let mut patch = Vec::new();
    let mut total = 0;
    for file in &files {
        if total >= size {
            break;
        }
        let Ok(text) = std::fs::read(file) else {
            continue;
        };
        let lines: Vec<&[u8]> = text.split(|&byte| byte == b'\n').collect();
        let name = file.to_string_lossy();
        let name = name.trim_start_matches('/');
        let before = patch.len();
        patch.extend_from_slice(
            format!("diff --git a/{name} b/{name}\n--- a/{name}\n+++ b/{name}\n").as_bytes(),
        );
        let header = patch.len();
        let (mut at, mut shift) = (1 + (rng.next() % 20) as usize, 0i64);
        for _ in 0..MAX_HUNKS {
            let (removed, added) = ((rng.next() % 4) as usize, 4 + (rng.next() % 12) as usize);
            if at + 6 + removed + added > lines.len() {
                break;
            }
            let old_len = 6 + removed;
            let new_len = 6 + added;
            patch.extend_from_slice(
                format!(
                    "@@ -{},{old_len} +{},{new_len} @@\n",
                    at + 1,
                    at as i64 + 1 + shift
                )
                .as_bytes(),
            );
            let mut line = |prefix: u8, text: &[u8]| {
                patch.push(prefix);
                patch.extend_from_slice(text);
                patch.push(b'\n');
            };
            let mut next = at;
            for prefix in std::iter::repeat_n(b' ', 3)
                .chain(std::iter::repeat_n(b'-', removed))
                .chain(std::iter::repeat_n(b'+', added))
                .chain(std::iter::repeat_n(b' ', 3))
            {
                line(prefix, lines[next]);
                next += 1;
            }
            shift += added as i64 - removed as i64;
            at = next + 3 + (rng.next() % 16) as usize;
        }
        if patch.len() == header {
            patch.truncate(before);
            continue;
        }
        total += patch.len() - before;
        if patch.len() >= 100 << 10 {
            patches.push(std::mem::take(&mut patch));
        }
    }
    if !patch.is_empty() {
        patches.push(patch);
    }
    (patches, description)
}

/// Our figures on one corpus.
struct Figures {
    rate: f64,
    p99: Duration,
    median: Duration,
}

/// Scans every patch `passes` times on this thread: the median pass's throughput, and
/// latency percentiles over every scan of every pass. The machine is shared and noisy.
fn measure(scanner: &Scanner, patches: &[Vec<u8>], passes: usize, title: &str) -> Figures {
    let options = ScanOptions::default();
    let total: usize = patches.iter().map(Vec::len).sum();
    let mut latencies = Vec::with_capacity(patches.len() * passes);
    let mut pass_rates = Vec::with_capacity(passes);
    let mut findings = 0;
    for _ in 0..passes {
        findings = 0;
        let started = Instant::now();
        for patch in patches {
            let one = Instant::now();
            findings += scanner
                .scan(patch, &options)
                .expect("the corpus's patches parse")
                .findings
                .len();
            latencies.push(one.elapsed());
        }
        pass_rates.push(mib_per_s(total, started.elapsed()));
    }
    pass_rates.sort_by(f64::total_cmp);
    let rate = pass_rates[pass_rates.len() / 2];
    println!(
        "\n{title}: {:.1} MiB in {} patches of ~100 KB",
        total as f64 / (1 << 20) as f64,
        patches.len()
    );
    println!(
        "{findings} findings; median of {passes} passes (slowest {:.1}, fastest {:.1} MiB/s)",
        pass_rates[0],
        pass_rates[pass_rates.len() - 1]
    );
    println!("{:<44} {:>12} {:>12}", "scanner", "MiB/s", "airlock ×");
    println!(
        "{:<44} {:>12.1} {:>12}",
        "airlock (full rule pack, one core)", rate, "1.0×"
    );
    Figures {
        rate,
        p99: percentile(&mut latencies, 0.99),
        median: percentile(&mut latencies, 0.5),
    }
}

/// Ratios against the peers on the same corpus.
#[derive(Default)]
struct Ratios {
    detect_secrets: Option<f64>,
    semgrep: Option<f64>,
    ripgrep: Option<f64>,
}

fn main() {
    let size_mb = env_number("SIZE_MB", 100);
    let peer_mb = env_number("PEER_MB", 4);
    let passes = env_number("PASSES", 3).max(1);
    let peers = !std::env::var("PEERS").is_ok_and(|peers| peers == "0");
    let rules = RulePack::builtin();
    let started = Instant::now();
    let scanner = Scanner::new(&rules).expect("the built-in rules compile");
    println!(
        "Scanner throughput: {} rules, compiled in {:.1} ms",
        rules.rules().len(),
        started.elapsed().as_secs_f64() * 1e3
    );

    // CORPUS=real or CORPUS=templates measures one alone.
    let only = std::env::var("CORPUS").unwrap_or_default();
    let mut results = Vec::new();
    for corpus in ["real", "templates"] {
        if !only.is_empty() && only != corpus {
            continue;
        }
        let (title, patches) = if corpus == "real" {
            let (patches, description) = real_source_patches(size_mb << 20);
            let title = format!("Diffs cut from real source files: {description}");
            (title, patches)
        } else {
            let mut rng = Rng(0x5eed_cafe_f00d_1234);
            let patches: Vec<Vec<u8>> = (0..size_mb * 10)
                .map(|i| patch(&mut rng, 100 << 10, i))
                .collect();
            let title = format!(
                "Diffs generated from {} line templates",
                support::LINES.len()
            );
            (title, patches)
        };
        if patches.is_empty() {
            peer_unavailable("the real-source corpus", "no source files found");
            continue;
        }
        let figures = measure(&scanner, &patches, passes, &title);
        let ratios = if peers {
            run_peers(&rules, &patches, figures.rate, peer_mb)
        } else {
            Ratios::default()
        };
        let total: usize = patches.iter().map(Vec::len).sum();
        results.push((
            title.split(':').next().unwrap_or(&title).to_owned(),
            total,
            figures,
            ratios,
        ));
    }

    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    for (title, total, figures, ratios) in &results {
        println!("\n{title} ({:.0} MiB):", *total as f64 / (1 << 20) as f64);
        println!(
            "  p99 latency per ~100 KB patch: {:.2} ms (median {:.2} ms)",
            figures.p99.as_secs_f64() * 1e3,
            figures.median.as_secs_f64() * 1e3
        );
        println!(
            "  target ≥ 1 GiB/s: {} ({:.0} MiB/s)",
            verdict(figures.rate >= 1024.0),
            figures.rate
        );
        if let Some(ratio) = ratios.detect_secrets {
            println!(
                "  target ≥ 1000× detect-secrets: {} ({ratio:.0}×)",
                verdict(ratio >= 1000.0)
            );
        }
        if let Some(ratio) = ratios.semgrep {
            println!("  semgrep (no target set): airlock {ratio:.0}× faster");
        }
        if let Some(ratio) = ratios.ripgrep {
            println!(
                "  target faster than ripgrep on the keywords alone: {} ({ratio:.2}×)",
                verdict(ratio > 1.0)
            );
        }
        println!(
            "  target < 5 ms p99 per patch: {}",
            verdict(figures.p99 < Duration::from_millis(5))
        );
    }
}

/// Runs the peers on `patches` (detect-secrets and semgrep on their first `peer_mb`
/// MiB), printing each one's rate and how many times faster ours was.
fn run_peers(rules: &RulePack, patches: &[Vec<u8>], ours_rate: f64, peer_mb: usize) -> Ratios {
    let mut ratios = Ratios::default();
    let total: usize = patches.iter().map(Vec::len).sum();
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
            ratios.detect_secrets = Some(ours_rate / rate);
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
    match pypi_tool("semgrep", "semgrep") {
        Ok(tool) => {
            let rules_file = dir.path().join("semgrep-rules.yml");
            std::fs::write(&rules_file, semgrep_rules(rules)).unwrap();
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
                    ratios.semgrep = Some(ours_rate / rate);
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
            ratios.ripgrep = Some(ours_rate / rate);
            println!(
                "{:<44} {:>12.1} {:>11.2}×",
                "ripgrep, rule keywords only (-i -F, 1 thread)",
                rate,
                ours_rate / rate
            );
        }
        Err(reason) => peer_unavailable("ripgrep", &reason),
    }
    ratios
}
