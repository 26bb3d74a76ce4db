//! Policy decision per change: the default policy, parsed once, deciding realistic
//! changes (several files, scanner findings, owners from a CODEOWNERS file), timed as the
//! server calls it: `Policy::evaluate` (encode the input, clone the prepared engine,
//! load the input, evaluate on the time-limited thread, read the obligations).
//!
//! Run: `cargo bench -p airlock-policy --bench decision` (RUNS=N decisions per change,
//! default 2000). Prints the median and p99 per decision for each change and over all
//! of them; the target is < 1 ms per decision.

use std::time::{Duration, Instant};

use airlock_core::FileOp;
use airlock_core::review::{
    AgentFacts, ChangeFacts, FileFacts, FindingFacts, LineCounts, PolicyInput, TimeFacts,
    TrackRecord, is_gate_file,
};
use airlock_policy::{CodeOwners, DEFAULT_POLICY, Policy};
use airlock_scan::{Category, Finding, Severity};

const TARGET: Duration = Duration::from_millis(1);

/// The server's default limit (`review.policy_timeout`); never reached here.
const LIMIT: Duration = Duration::from_secs(2);

/// A CODEOWNERS file of a mid-sized service repository: teams by area, a few
/// individuals, and the usual catch-all first (the last matching line wins).
const CODEOWNERS: &str = "\
# Owners by area; the last matching line wins.
*                       @acme/platform
/docs/                  @acme/docs
*.md                    @acme/docs
/src/                   @acme/backend
/src/auth/              @acme/security
/src/payments/          @acme/payments @carol
/src/payments/ledger/   @acme/payments @acme/finance
/src/api/               @acme/backend @dave
/web/                   @acme/frontend
/web/src/checkout/      @acme/frontend @acme/payments
/db/migrate/            @acme/dba
/migrations/            @acme/dba
/deploy/                @acme/sre
/.github/               @acme/platform @acme/security
Cargo.toml              @acme/platform
package.json            @acme/frontend @acme/platform
/tests/                 @acme/qa
";

/// A change as the tests of the policy describe one: files with their line counts, and
/// the findings of its checks.
struct Change {
    name: &'static str,
    files: Vec<(&'static str, usize, usize)>,
    findings: Vec<(Category, Severity, &'static str)>,
}

fn changes() -> Vec<Change> {
    vec![
        Change {
            name: "1 file, no finding (docs)",
            files: vec![("docs/payments.md", 12, 3)],
            findings: vec![],
        },
        Change {
            name: "4 files, 1 finding (feature + test)",
            files: vec![
                ("src/api/cards.rs", 40, 12),
                ("src/api/mod.rs", 2, 0),
                ("tests/cards_test.rs", 80, 0),
                ("Cargo.toml", 1, 0),
            ],
            findings: vec![(Category::DependencyChange, Severity::Low, "Cargo.toml")],
        },
        Change {
            name: "8 files, 3 findings (migration, SQL)",
            files: vec![
                ("db/migrate/042_add_ledger_index.rb", 25, 0),
                ("src/payments/ledger/entry.rs", 60, 20),
                ("src/payments/ledger/query.rs", 35, 14),
                ("src/payments/refund.rs", 18, 6),
                ("src/auth/session.rs", 4, 2),
                ("web/src/checkout/summary.tsx", 30, 8),
                ("web/src/checkout/summary.test.tsx", 45, 0),
                ("docs/ledger.md", 20, 0),
            ],
            findings: vec![
                (
                    Category::SqlInjection,
                    Severity::Medium,
                    "src/payments/ledger/query.rs",
                ),
                (
                    Category::SchemaContract,
                    Severity::Medium,
                    "src/payments/ledger/entry.rs",
                ),
                (
                    Category::DestructiveOp,
                    Severity::Low,
                    "src/payments/refund.rs",
                ),
            ],
        },
        Change {
            name: "30 files, 6 findings (gate file, CI)",
            files: (0..24)
                .map(|i| {
                    (
                        [
                            "src/api/handlers.rs",
                            "src/auth/token.rs",
                            "web/src/app.tsx",
                        ][i % 3],
                        10 + i,
                        i,
                    )
                })
                .chain([
                    (".github/CODEOWNERS", 2, 1),
                    (".github/workflows/ci.yml", 6, 9),
                    ("deploy/values.yaml", 3, 3),
                    ("package.json", 2, 1),
                    ("tests/auth_test.rs", 50, 40),
                    ("docs/auth.md", 15, 2),
                ])
                .collect(),
            findings: vec![
                (Category::GateTamper, Severity::High, ".github/CODEOWNERS"),
                (
                    Category::CiTamper,
                    Severity::High,
                    ".github/workflows/ci.yml",
                ),
                (
                    Category::InsecureConfig,
                    Severity::Medium,
                    "deploy/values.yaml",
                ),
                (Category::DependencyChange, Severity::Low, "package.json"),
                (
                    Category::TestWeakening,
                    Severity::Medium,
                    "tests/auth_test.rs",
                ),
                (Category::Secret, Severity::Critical, "src/auth/token.rs"),
            ],
        },
    ]
}

/// The input the server builds for a change: owners from the CODEOWNERS parse, findings
/// through `FindingFacts::from_findings` from scanner findings.
fn input(change: &Change, owners: &CodeOwners) -> PolicyInput {
    let paths: Vec<String> = change.files.iter().map(|f| f.0.to_owned()).collect();
    let findings: Vec<Finding> = change
        .findings
        .iter()
        .enumerate()
        .map(|(i, (category, severity, path))| Finding {
            rule: format!("{}.bench-{i}", category.as_str()),
            category: *category,
            severity: *severity,
            path: (*path).to_owned(),
            line: 10 + i as u32,
            message: "a finding of the benchmark".to_owned(),
            remediation: String::new(),
            fingerprint: format!("{i:064}"),
            preview: None,
            allowed: None,
        })
        .collect();
    PolicyInput {
        change: ChangeFacts {
            id: "ch_0194f1b2c3d4e5f6a7b8c9d0e1f2a3b4".to_owned(),
            title: change.name.to_owned(),
            revision: 1,
            target_branch: "main".to_owned(),
            urgent: false,
        },
        files: change
            .files
            .iter()
            .map(|&(path, added, deleted)| FileFacts {
                path: path.to_owned(),
                old_path: None,
                op: FileOp::Modify,
                lines_added: added,
                lines_deleted: deleted,
                owners: owners.owners_of(path).to_vec(),
            })
            .collect(),
        lines: LineCounts {
            added: change.files.iter().map(|f| f.1).sum(),
            deleted: change.files.iter().map(|f| f.2).sum(),
        },
        findings: FindingFacts::from_findings(&findings),
        agent: AgentFacts {
            name: "coder-bot".to_owned(),
            kind: "agent".to_owned(),
            owner: Some("alice".to_owned()),
            track_record: TrackRecord {
                proposed: 140,
                approved: 120,
                rejected: 9,
                rolled_back: 2,
                failed: 6,
                expired: 3,
            },
        },
        owners: owners.owners_of_all(paths.iter().map(String::as_str)),
        gate_files: paths.iter().filter(|p| is_gate_file(p)).cloned().collect(),
        time: TimeFacts::at(1_795_439_100_000),
        paths,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let runs = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(2_000)
        .max(10);
    let loading = Instant::now();
    let policy =
        Policy::from_modules(&[("policy.rego", DEFAULT_POLICY)]).expect("the default policy loads");
    let loaded_in = loading.elapsed();
    let owners = CodeOwners::parse(CODEOWNERS).expect("the CODEOWNERS file parses");

    println!(
        "\nPolicy decision per change: the default policy (loaded once, in {}), {runs} decisions per change",
        us(loaded_in)
    );
    println!(
        "{:<40} {:>8} {:>12} {:>12} {:>12}",
        "change", "risk", "median", "p99", "max"
    );
    let mut all = Vec::with_capacity(runs * 4);
    for change in changes() {
        let input = input(&change, &owners);
        // Warm up: the first evaluations fault in the engine's pages and thread stacks.
        let obligations = policy.evaluate(&input, LIMIT).expect("the policy decides");
        for _ in 0..runs / 10 {
            policy.evaluate(&input, LIMIT).expect("the policy decides");
        }
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let decided = policy.evaluate(&input, LIMIT).expect("the policy decides");
            samples.push(started.elapsed());
            assert_eq!(decided, obligations, "a decision depends on its input only");
        }
        samples.sort();
        println!(
            "{:<40} {:>8} {:>12} {:>12} {:>12}",
            change.name,
            obligations.risk.as_str(),
            us(percentile(&samples, 0.5)),
            us(percentile(&samples, 0.99)),
            us(*samples.last().expect("samples")),
        );
        all.extend(samples);
    }
    all.sort();
    let median = percentile(&all, 0.5);
    let p99 = percentile(&all, 0.99);
    println!(
        "{:<40} {:>8} {:>12} {:>12} {:>12}",
        "all changes",
        "",
        us(median),
        us(p99),
        us(*all.last().expect("samples"))
    );
    println!(
        "target < {} ms per decision: median {}, p99 {}: {}",
        TARGET.as_millis(),
        us(median),
        us(p99),
        if p99 < TARGET { "met" } else { "NOT met" }
    );
}
