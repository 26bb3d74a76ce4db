//! The fast scan against the plain reference engine: on the labelled corpus, on every
//! rule example, and on many generated diffs, both must return the same report (every
//! finding, every counter) or the same error.

use std::path::Path;

use crate::example::example_diff;
use crate::rule::{RuleKind, RulePack};
use crate::scanner::{ScanOptions, Scanner};

fn scanner() -> Scanner {
    Scanner::new(&RulePack::builtin()).expect("built-in rules compile")
}

/// Scans with both engines and returns the number of findings, or `None` for an error.
#[track_caller]
fn check(scanner: &Scanner, diff: &[u8], options: &ScanOptions) -> Option<usize> {
    let fast = scanner.scan(diff, options);
    let reference = scanner.scan_reference(diff, options);
    assert_eq!(
        fast,
        reference,
        "fast scan and reference differ on:\n{}",
        String::from_utf8_lossy(diff)
    );
    fast.ok().map(|report| report.findings.len())
}

#[test]
fn corpus_and_examples_scan_alike() {
    let scanner = scanner();
    let options = ScanOptions::default();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut scanned = 0;
    for directory in ["bad", "benign"] {
        for entry in std::fs::read_dir(root.join(directory)).unwrap() {
            let _ = check(
                &scanner,
                &std::fs::read(entry.unwrap().path()).unwrap(),
                &options,
            );
            scanned += 1;
        }
    }
    for rule in RulePack::builtin().rules() {
        for example in rule.examples.positive.iter().chain(&rule.examples.negative) {
            let _ = check(&scanner, example_diff(rule, example).as_bytes(), &options);
            scanned += 1;
        }
    }
    assert!(scanned > 300, "only {scanned} inputs");
}

/// A deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Paths that switch on different rules: languages, CI, tests, models, migrations,
/// manifests, the gate's own files, generated files.
const PATHS: &[&str] = &[
    "src/app.py",
    "src/lib.rs",
    "web/api.ts",
    "web/page.js",
    "cmd/main.go",
    "pkg/store_test.go",
    "src/Main.java",
    "lib/task.rb",
    "spec/task_spec.rb",
    "index.php",
    ".github/workflows/ci.yml",
    ".gitlab-ci.yml",
    "Makefile",
    "tests/test_api.py",
    "app/models.py",
    "db/migrate/001_add.rb",
    "app/migrations/0002_x.py",
    "config/settings.py",
    "package.json",
    "pyproject.toml",
    "Cargo.toml",
    "airlock.toml",
    "README.md",
    "vendor/x/y.go",
    "deploy/values.yaml",
];

/// Line texts: every line example of every rule, the rules' keywords, and code that
/// looks close to what rules look for.
fn line_pool() -> Vec<String> {
    let mut pool: Vec<String> = vec![
        String::new(),
        "    return value".to_owned(),
        "x = 1".to_owned(),
        "# comment with airlock:allow secret fixture".to_owned(),
        "\tif err != nil {".to_owned(),
        "query = \"SELECT * FROM users WHERE id = \" + user_id".to_owned(),
        "password = \"hunter2hunter2\"".to_owned(),
        "  coverage: 80".to_owned(),
        "fail_under = 90".to_owned(),
        "  continue-on-error: true".to_owned(),
        "    - run: cargo test".to_owned(),
        "assert True".to_owned(),
        "token = os.environ[\"TOKEN\"]".to_owned(),
        "rm -rf /".to_owned(),
    ];
    for rule in RulePack::builtin().rules() {
        pool.extend(rule.keywords.iter().cloned());
        if rule.kind == RuleKind::File {
            continue;
        }
        for example in rule.examples.positive.iter().chain(&rule.examples.negative) {
            if example.starts_with("diff --git ") {
                continue;
            }
            if let Some(hunk) = example.strip_prefix("@@\n") {
                pool.extend(
                    hunk.lines()
                        .map(|line| line.get(1..).unwrap_or("").to_owned()),
                );
            } else {
                pool.push(example.clone());
            }
        }
    }
    pool
}

/// A line from the pool, sometimes changed: case flipped, joined to another, cut,
/// padded with punctuation, given a carriage return, or made longer than a window.
fn line(rng: &mut Rng, pool: &[String]) -> Vec<u8> {
    let mut text = rng.pick(pool).clone().into_bytes();
    match rng.below(12) {
        0 => text.make_ascii_uppercase(),
        1 => text.make_ascii_lowercase(),
        2 => {
            text.extend_from_slice(b" ");
            text.extend_from_slice(rng.pick(pool).as_bytes());
        }
        3 => {
            let cut = rng.below(text.len() + 1);
            text.truncate(cut);
        }
        4 => {
            let at = rng.below(text.len() + 1);
            let byte = *rng.pick(b" \t\"'=:;(){}[]+-_./\\#@$%|!\r\x0b\x0c\xff");
            text.insert(at, byte);
        }
        5 => text.push(b'\r'),
        6 if rng.below(8) == 0 => {
            let mut long = b"var a=1;".repeat(700);
            let at = rng.below(long.len());
            long.splice(at..at, text);
            text = long;
        }
        _ => {}
    }
    text.retain(|&byte| byte != b'\n');
    text
}

/// A diff of a few files and hunks whose headers count their lines right.
fn diff(rng: &mut Rng, pool: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let path = rng.pick(PATHS);
        let change = rng.below(10);
        let (old, new) = match change {
            0 => ("/dev/null".to_owned(), format!("b/{path}")),
            1 => (format!("a/{path}"), "/dev/null".to_owned()),
            _ => (format!("a/{path}"), format!("b/{path}")),
        };
        out.extend_from_slice(format!("diff --git a/{path} b/{path}\n").as_bytes());
        if change == 0 {
            out.extend_from_slice(b"new file mode 100644\n");
        } else if change == 1 {
            out.extend_from_slice(b"deleted file mode 100644\n");
        }
        out.extend_from_slice(format!("--- {old}\n+++ {new}\n").as_bytes());
        let mut start = 1;
        for _ in 0..1 + rng.below(3) {
            let mut body: Vec<(u8, Vec<u8>)> = Vec::new();
            for _ in 0..1 + rng.below(12) {
                let kind = match change {
                    0 => b'+',
                    1 => b'-',
                    _ => *rng.pick(b"  +--+++"),
                };
                let text = line(rng, pool);
                // Now and then a statement written over two added lines, cut after an
                // opening bracket, a comma or a `+`, as code is wrapped.
                let cuts: Vec<usize> = (0..text.len())
                    .filter(|&at| matches!(text[at], b'(' | b',' | b'+'))
                    .collect();
                if kind == b'+' && !cuts.is_empty() && rng.below(3) == 0 {
                    let cut = *rng.pick(&cuts) + 1;
                    body.push((b'+', text[..cut].to_vec()));
                    body.push((b'+', text[cut..].to_vec()));
                } else {
                    body.push((kind, text));
                }
            }
            if !body.iter().any(|(kind, _)| *kind != b' ') {
                body.push((b'+', line(rng, pool)));
            }
            let old_len = body.iter().filter(|(kind, _)| *kind != b'+').count();
            let new_len = body.iter().filter(|(kind, _)| *kind != b'-').count();
            let (old_start, new_start) = match change {
                0 => (0, 1),
                1 => (1, 0),
                _ => (start, start),
            };
            out.extend_from_slice(
                format!("@@ -{old_start},{old_len} +{new_start},{new_len} @@\n").as_bytes(),
            );
            for (kind, text) in &body {
                out.push(*kind);
                out.extend_from_slice(text);
                out.push(b'\n');
            }
            start += old_len.max(new_len) + 5;
            if change < 2 {
                break;
            }
        }
    }
    // One diff in ten damaged: both engines must refuse it alike (or scan it alike,
    // where the damage leaves a diff).
    if rng.below(10) == 0 && !out.is_empty() {
        let at = rng.below(out.len());
        out[at] = *rng.pick(b"@+- \n\\x");
    }
    out
}

#[test]
fn generated_diffs_scan_alike() {
    generated_diffs_scan_alike_with(false);
}

/// As on a CPU without AVX2: the whole scan with the portable window loop.
#[test]
fn generated_diffs_scan_alike_with_the_portable_loop() {
    generated_diffs_scan_alike_with(true);
}

fn generated_diffs_scan_alike_with(portable: bool) {
    crate::prefilter::FORCE_PORTABLE.with(|force| force.set(portable));
    let scanner = scanner();
    let pool = line_pool();
    let mut rng = Rng(0x00a1_7c0c_5ca7_f00d);
    let small = ScanOptions {
        max_findings: 3,
        ..ScanOptions::default()
    };
    let default = ScanOptions::default();
    let (mut findings, mut errors) = (0, 0);
    for round in 0..2000 {
        let input = diff(&mut rng, &pool);
        let options = if round % 10 == 0 { &small } else { &default };
        match check(&scanner, &input, options) {
            Some(count) => findings += count,
            None => errors += 1,
        }
    }
    // The generator must reach both the rules and the parser's refusals.
    assert!(findings > 2000, "only {findings} findings");
    assert!(errors > 20, "only {errors} refused diffs");
}

#[test]
fn random_bytes_scan_alike() {
    let scanner = scanner();
    let mut rng = Rng(0x5eed_0000_b17e_0001);
    for _ in 0..500 {
        let length = rng.below(300);
        let bytes: Vec<u8> = (0..length).map(|_| *rng.pick(b"+- @\n\\dif")).collect();
        let _ = check(&scanner, &bytes, &ScanOptions::default());
    }
}
