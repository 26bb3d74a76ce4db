//! The scanner's findings, pinned: every report (findings and counters) on the labelled
//! corpus, on every rule example, on the throughput benchmark's generated diffs and on
//! generated diffs salted with dangerous lines hashes to the digest recorded before the
//! scanner's speed work. A change to the engine that alters any finding fails here; a
//! deliberate change to the rules or to what a finding holds records a new digest.

use std::path::Path;

use airlock_scan::{RulePack, ScanOptions, Scanner, example_diff};
use sha2::{Digest, Sha256};

use crate::support::{LINES, Rng, patch, patch_from};

/// SHA-256 of every report below, in order, as `Debug` prints it.
const EXPECTED: &str = "e2f619ddd55f8920d45d28b73434c7c815728a1bf42639b9f237d13098a447b1";

/// Paths that bring the path-bound rules in: CI, tests, models, manifests, shell, SQL.
const PATHS: &[&str] = &[
    ".github/workflows/ci.yml",
    ".gitlab-ci.yml",
    "tests/test_orders.py",
    "src/orders_test.go",
    "app/models/order.rb",
    "orders/models.py",
    "package.json",
    "requirements.txt",
    "Cargo.toml",
    "deploy/run.sh",
    "db/schema.sql",
    "Dockerfile",
    "config/settings.yaml",
    "src/app.ts",
    "src/main.rs",
    "src/server.go",
    "src/Main.java",
    "lib/tasks.rb",
    "infra/main.tf",
    "Makefile",
];

/// Single-line examples of the built-in rules, and the changed lines of the corpus.
fn dangerous_lines(pack: &RulePack, root: &Path) -> Vec<String> {
    let mut lines: Vec<String> = pack
        .rules()
        .iter()
        .flat_map(|rule| rule.examples.positive.iter().chain(&rule.examples.negative))
        .filter(|example| !example.contains('\n'))
        .cloned()
        .collect();
    let mut files: Vec<_> = std::fs::read_dir(root.join("bad"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix('+').or_else(|| line.strip_prefix('-'))
                && !rest.starts_with("++")
                && !rest.starts_with("--")
            {
                lines.push(rest.to_owned());
            }
        }
    }
    lines
}

#[test]
fn findings_are_unchanged() {
    let pack = RulePack::builtin();
    let scanner = Scanner::new(&pack).expect("built-in rules compile");
    let options = ScanOptions::default();
    let few = ScanOptions {
        max_findings: 5,
        ..ScanOptions::default()
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for directory in ["bad", "benign"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(directory))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        inputs.extend(files.into_iter().map(|file| std::fs::read(file).unwrap()));
    }
    for rule in pack.rules() {
        for example in rule.examples.positive.iter().chain(&rule.examples.negative) {
            inputs.push(example_diff(rule, example).into_bytes());
        }
    }
    // The benchmark's own input, as it generates it.
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    inputs.extend((0..10).map(|serial| patch(&mut rng, 100 << 10, serial)));
    // Benign lines with dangerous ones among them, in files every rule applies to.
    let dangerous = dangerous_lines(&pack, &root);
    let mut salted: Vec<&str> = dangerous.iter().map(String::as_str).collect();
    for _ in 0..dangerous.len() / LINES.len() {
        salted.extend_from_slice(LINES);
    }
    let mut rng = Rng(0x0dd_ba11_5a17_ed00);
    for _ in 0..40 {
        inputs.push(patch_from(&mut rng, 50 << 10, &salted, |rng, _| {
            rng.pick(PATHS).to_owned()
        }));
    }

    // FINDINGS_DUMP=FILE writes each input's findings, one line each: run it before and
    // after a change to the rules and diff the two files to see what the change did.
    let mut dump = std::env::var_os("FINDINGS_DUMP").map(|_| String::new());
    let mut digest = Sha256::new();
    let (mut findings, mut truncated) = (0, 0);
    for (index, input) in inputs.iter().enumerate() {
        for options in [&options, &few] {
            let report = scanner.scan(input, options);
            if let (Some(dump), Ok(report)) = (&mut dump, &report) {
                let rules: Vec<String> = report
                    .findings
                    .iter()
                    .map(|finding| format!("{}:{}:{}", finding.rule, finding.path, finding.line))
                    .collect();
                dump.push_str(&format!("input {index}: {}\n", rules.join(" ")));
            }
            if let Ok(report) = &report {
                findings += report.findings.len();
                truncated += usize::from(report.stats.findings_truncated);
            }
            digest.update(format!("{report:?}\n").as_bytes());
        }
    }
    if let (Some(dump), Some(file)) = (dump, std::env::var_os("FINDINGS_DUMP")) {
        std::fs::write(file, dump).expect("FINDINGS_DUMP is writable");
    }
    let digest = hex::encode(digest.finalize());
    eprintln!(
        "{} inputs, {findings} findings, {truncated} reports truncated",
        inputs.len()
    );
    assert!(findings > 2_000, "only {findings} findings");
    assert_eq!(
        digest,
        EXPECTED,
        "the findings on {} inputs ({findings} findings) changed",
        inputs.len()
    );
}
