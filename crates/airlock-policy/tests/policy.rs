//! The policy boundary: the default policy on a table of changes, time limits, broken and
//! escaping policies, CODEOWNERS as GitHub documents it, and the bundle hash. Everything
//! real: the regorus interpreter, real scanner findings, real files.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use airlock_core::FileOp;
use airlock_core::review::{
    AgentFacts, ChangeFacts, FileFacts, FindingFacts, LineCounts, Obligations, PolicyInput, Risk,
    TimeFacts, TrackRecord, is_gate_file,
};
use airlock_policy::{CodeOwners, DEFAULT_POLICY, Policy, PolicyError};
use airlock_scan::{Category, Finding, Severity};

const LIMIT: Duration = Duration::from_secs(2);

/// A change, described by what the tests vary.
#[derive(Clone, Default)]
struct Change {
    /// (path, lines added, lines deleted)
    files: Vec<(&'static str, usize, usize)>,
    findings: Vec<(Category, Severity)>,
    codeowners: &'static str,
}

fn change(files: &[(&'static str, usize, usize)]) -> Change {
    Change {
        files: files.to_vec(),
        ..Change::default()
    }
}

impl Change {
    fn finding(mut self, category: Category, severity: Severity) -> Change {
        self.findings.push((category, severity));
        self
    }

    fn owned_by(mut self, codeowners: &'static str) -> Change {
        self.codeowners = codeowners;
        self
    }

    /// The policy input airlock would build: owners from a real CODEOWNERS parse,
    /// findings through `FindingFacts::from_findings` from real scanner `Finding`s.
    fn input(&self) -> PolicyInput {
        let codeowners = CodeOwners::parse(self.codeowners).unwrap();
        let paths: Vec<String> = self.files.iter().map(|f| f.0.to_owned()).collect();
        let findings: Vec<Finding> = self
            .findings
            .iter()
            .enumerate()
            .map(|(i, (category, severity))| Finding {
                rule: format!("test-rule-{i}"),
                category: *category,
                severity: *severity,
                path: paths.first().cloned().unwrap_or_default(),
                line: 1,
                message: "a finding".to_owned(),
                remediation: String::new(),
                fingerprint: format!("{i:064}"),
                preview: None,
                allowed: None,
            })
            .collect();
        PolicyInput {
            change: ChangeFacts {
                id: "ch_test".to_owned(),
                title: "a change".to_owned(),
                revision: 1,
                target_branch: "main".to_owned(),
                urgent: false,
            },
            files: self
                .files
                .iter()
                .map(|&(path, added, deleted)| FileFacts {
                    path: path.to_owned(),
                    old_path: None,
                    op: FileOp::Modify,
                    lines_added: added,
                    lines_deleted: deleted,
                    owners: codeowners.owners_of(path).to_vec(),
                })
                .collect(),
            lines: LineCounts {
                added: self.files.iter().map(|f| f.1).sum(),
                deleted: self.files.iter().map(|f| f.2).sum(),
            },
            findings: FindingFacts::from_findings(&findings),
            agent: AgentFacts {
                name: "coder-bot".to_owned(),
                kind: "agent".to_owned(),
                owner: Some("alice".to_owned()),
                track_record: TrackRecord::default(),
            },
            owners: codeowners.owners_of_all(paths.iter().map(String::as_str)),
            gate_files: paths.iter().filter(|p| is_gate_file(p)).cloned().collect(),
            time: TimeFacts::at(1_795_439_100_000),
            paths,
        }
    }
}

fn default_policy() -> Policy {
    Policy::from_modules(&[("policy.rego", DEFAULT_POLICY)]).unwrap()
}

/// Below critical, the deployment's own steps (`deploy.steps`).
const NORMAL_CANARY: [u32; 0] = [];
const CRITICAL_CANARY: [u32; 7] = [1, 2, 5, 10, 25, 50, 100];

/// The obligations the default policy documents for each risk tier.
fn expected(risk: Risk, groups: &[(&str, u32)], admin: bool, deny: bool) -> Obligations {
    let approvals = if risk >= Risk::High { 2 } else { 1 };
    Obligations {
        risk,
        approvals,
        groups: groups.iter().map(|(g, n)| ((*g).to_owned(), *n)).collect(),
        admin_required: admin,
        deny: if deny {
            vec!["placeholder".to_owned()]
        } else {
            vec![]
        },
        staging: true,
        canary_steps: if risk == Risk::Critical {
            CRITICAL_CANARY.to_vec()
        } else {
            NORMAL_CANARY.to_vec()
        },
        auto_approve: false,
        break_glass_skips_checks: false,
    }
}

fn check(policy: &Policy, what: &str, change: &Change, mut want: Obligations) {
    let got = policy
        .evaluate(&change.input(), LIMIT)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    // Deny reasons are checked for presence and wording, not copied into every case.
    if !want.deny.is_empty() {
        assert_eq!(got.deny.len(), 1, "{what}: {got:?}");
        assert!(got.deny[0].contains("split"), "{what}: {:?}", got.deny);
        want.deny = got.deny.clone();
    }
    assert_eq!(got, want, "{what}");
}

#[test]
fn default_policy_obligations() {
    use Category::*;
    use Risk::*;
    use Severity as S;
    let policy = default_policy();
    let payments_and_security = "\
# Ownership for the tests.
*                   carol@example.com
db/migrate/         @payments
/src/auth/          @acme/security
";
    let cases: Vec<(&str, Change, Obligations)> = vec![
        // low: documentation and tests only, small, no findings.
        (
            "docs-only tiny",
            change(&[("docs/guide.md", 10, 2)]),
            expected(Low, &[], false, false),
        ),
        (
            "readme",
            change(&[("README.md", 3, 3)]),
            expected(Low, &[], false, false),
        ),
        (
            "notes",
            change(&[("notes.txt", 3, 0)]),
            expected(Low, &[], false, false),
        ),
        (
            "go test",
            change(&[("pkg/api/handler_test.go", 40, 0)]),
            expected(Low, &[], false, false),
        ),
        (
            "py test",
            change(&[("app/test_models.py", 40, 0)]),
            expected(Low, &[], false, false),
        ),
        (
            "ts test",
            change(&[("web/button.test.ts", 20, 0), ("web/form.spec.ts", 20, 0)]),
            expected(Low, &[], false, false),
        ),
        (
            "tests dir",
            change(&[("tests/fixtures/data.json", 50, 50)]),
            expected(Low, &[], false, false),
        ),
        (
            "nested test dir",
            change(&[("crates/x/test/helper.rs", 5, 0)]),
            expected(Low, &[], false, false),
        ),
        (
            "rspec",
            change(&[("spec/models/user_spec.rb", 5, 0)]),
            expected(Low, &[], false, false),
        ),
        (
            "docs at 100 lines",
            change(&[("docs/a.md", 60, 40)]),
            expected(Low, &[], false, false),
        ),
        // Not low: one line too many, a finding, or a path that only looks like docs/tests.
        (
            "docs at 101 lines",
            change(&[("docs/a.md", 61, 40)]),
            expected(Medium, &[], false, false),
        ),
        (
            "docs with a low finding",
            change(&[("docs/a.md", 1, 0)]).finding(InsecureConfig, S::Low),
            expected(Medium, &[], false, false),
        ),
        (
            "docs and source",
            change(&[("docs/a.md", 1, 0), ("src/lib.rs", 1, 0)]),
            expected(Medium, &[], false, false),
        ),
        (
            "requirements.txt",
            change(&[("requirements.txt", 1, 1)]),
            expected(Medium, &[], false, false),
        ),
        (
            "CMakeLists.txt",
            change(&[("CMakeLists.txt", 1, 1)]),
            expected(Medium, &[], false, false),
        ),
        (
            "docs.rs is a file",
            change(&[("src/docs.rs", 1, 1)]),
            expected(Medium, &[], false, false),
        ),
        (
            "latest/ is not test/",
            change(&[("latest/main.go", 1, 1)]),
            expected(Medium, &[], false, false),
        ),
        (
            "empty change",
            change(&[]),
            expected(Medium, &[], false, false),
        ),
        // medium: ordinary source.
        (
            "ordinary source",
            change(&[("src/main.rs", 20, 5)]),
            expected(Medium, &[], false, false),
        ),
        (
            "500 lines",
            change(&[("src/main.rs", 300, 200)]),
            expected(Medium, &[], false, false),
        ),
        (
            "low finding",
            change(&[("src/main.rs", 1, 0)]).finding(TestWeakening, S::Low),
            expected(Medium, &[], false, false),
        ),
        // high.
        (
            "501 lines",
            change(&[("src/main.rs", 301, 200)]),
            expected(High, &[], false, false),
        ),
        (
            "medium finding",
            change(&[("src/main.rs", 1, 0)]).finding(SqlInjection, S::Medium),
            expected(High, &[], false, false),
        ),
        (
            "high finding",
            change(&[("src/main.rs", 1, 0)]).finding(InsecureConfig, S::High),
            expected(High, &[], false, false),
        ),
        (
            "dependency change",
            change(&[("Cargo.lock", 10, 10)]).finding(DependencyChange, S::Low),
            expected(High, &[], false, false),
        ),
        (
            "schema contract",
            change(&[("src/db.rs", 1, 1)]).finding(SchemaContract, S::Low),
            expected(High, &[], false, false),
        ),
        (
            "destructive op",
            change(&[("scripts/x.sh", 1, 0)]).finding(DestructiveOp, S::Low),
            expected(High, &[], false, false),
        ),
        (
            "migration at root",
            change(&[("migrations/0001_init.sql", 10, 0)]),
            expected(High, &[], false, false),
        ),
        (
            "nested rails migration",
            change(&[("services/billing/db/migrate/2024_add.rb", 10, 0)]),
            expected(High, &[], false, false),
        ),
        (
            "alembic",
            change(&[("alembic/versions/abc.py", 10, 0)]),
            expected(High, &[], false, false),
        ),
        (
            "migration in tests/ is still a migration",
            change(&[("tests/migrations/x.sql", 1, 0)]),
            expected(High, &[], false, false),
        ),
        (
            "migrations.rs is not a migration",
            change(&[("src/migrations.rs", 1, 0)]),
            expected(Medium, &[], false, false),
        ),
        (
            "unowned migration adds no group",
            change(&[("db/migrate/001.rb", 5, 0)]),
            expected(High, &[], false, false),
        ),
        (
            "owned migration plus a security-owned file",
            change(&[
                ("db/migrate/001_cards.rb", 5, 0),
                ("src/auth/session.rs", 3, 1),
            ])
            .owned_by(payments_and_security),
            expected(
                High,
                &[("@acme/security", 1), ("@payments", 1)],
                false,
                false,
            ),
        ),
        (
            "email owners are not groups",
            change(&[("src/main.rs", 1, 0)]).owned_by(payments_and_security),
            expected(Medium, &[], false, false),
        ),
        (
            "owners apply at low risk too",
            change(&[("docs/auth.md", 1, 0)]).owned_by("docs/ @docs-team\n"),
            expected(Low, &[("@docs-team", 1)], false, false),
        ),
        // critical.
        (
            "gate file",
            change(&[(".airlock/policy.rego", 5, 1)]),
            expected(Critical, &[], true, false),
        ),
        (
            "airlock.toml",
            change(&[("airlock.toml", 1, 1), ("src/main.rs", 1, 0)]),
            expected(Critical, &[], true, false),
        ),
        (
            "CODEOWNERS under docs/ is a gate file",
            change(&[("docs/CODEOWNERS", 1, 0)]),
            expected(Critical, &[], true, false),
        ),
        (
            "secret finding",
            change(&[("src/config.rs", 1, 0)]).finding(Secret, S::Low),
            expected(Critical, &[], false, false),
        ),
        (
            "gate tamper finding",
            change(&[("src/x.rs", 1, 0)]).finding(GateTamper, S::Medium),
            expected(Critical, &[], false, false),
        ),
        (
            "ci tamper finding",
            change(&[(".github/workflows/ci.yml", 1, 0)]).finding(CiTamper, S::Low),
            expected(Critical, &[], false, false),
        ),
        (
            "1000 deleted is high",
            change(&[("src/old.rs", 0, 1000)]),
            expected(High, &[], false, false),
        ),
        (
            "1001 deleted is critical",
            change(&[("src/old.rs", 0, 1001)]),
            expected(Critical, &[], false, false),
        ),
        // deny.
        (
            "20000 deleted is allowed",
            change(&[("src/old.rs", 0, 20000)]),
            expected(Critical, &[], false, false),
        ),
        (
            "huge deletion",
            change(&[("src/old.rs", 0, 20001)]),
            expected(Critical, &[], false, true),
        ),
    ];
    for (what, change, want) in &cases {
        check(&policy, what, change, want.clone());
    }
}

#[test]
fn default_policy_details() {
    let policy = default_policy();
    let got = policy
        .evaluate(&change(&[("src/old.rs", 3, 25_000)]).input(), LIMIT)
        .unwrap();
    assert_eq!(
        got.deny,
        [
            "the change deletes 25000 lines (more than 20000): too large to review; split it into smaller changes"
        ]
    );
    // A gate-file change is critical, needs an admin, and is never approved by rule.
    let got = policy
        .evaluate(&change(&[("CODEOWNERS", 1, 0)]).input(), LIMIT)
        .unwrap();
    assert!(got.admin_required && !got.approved_by_rule());
    assert_eq!(got.humans_needed(), 2);
    // Evaluation is deterministic: the same input gives the same answer.
    let input = change(&[("db/migrate/1.rb", 1, 0), ("docs/x.md", 1, 0)])
        .finding(Category::Secret, Severity::Low)
        .input();
    let first = policy.evaluate(&input, LIMIT).unwrap();
    for _ in 0..5 {
        assert_eq!(policy.evaluate(&input, LIMIT).unwrap(), first);
    }
}

/// The commented-out examples in the default policy are valid Rego that does what the
/// comments say, once uncommented.
#[test]
fn default_policy_examples_work_when_enabled() {
    let enabled = DEFAULT_POLICY
        .lines()
        .map(|line| {
            let example = [
                "# deny contains",
                "# auto_approve if",
                "# _working_hours",
                "# \t",
                "# }",
            ];
            if example.iter().any(|start| line.starts_with(start)) {
                &line[2..]
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(enabled, DEFAULT_POLICY);
    let policy = Policy::from_modules(&[("policy.rego", enabled.as_str())]).unwrap();

    let mut docs = change(&[("docs/a.md", 1, 0)]).input();
    assert!(
        !policy.evaluate(&docs, LIMIT).unwrap().auto_approve,
        "no track record yet"
    );
    docs.agent.track_record = TrackRecord {
        proposed: 25,
        approved: 25,
        ..TrackRecord::default()
    };
    let got = policy.evaluate(&docs, LIMIT).unwrap();
    assert!(got.auto_approve && got.approved_by_rule(), "{got:?}");
    docs.agent.track_record.rejected = 1;
    assert!(!policy.evaluate(&docs, LIMIT).unwrap().auto_approve);

    // 2026-11-23T13:05Z is a Monday afternoon; 1_795_439_100_000 + 12 h is 01:05.
    let mut gate = change(&[(".airlock/policy.rego", 1, 0)]).input();
    assert!(policy.evaluate(&gate, LIMIT).unwrap().deny.is_empty());
    gate.time = TimeFacts::at(1_795_439_100_000 + 12 * 3_600_000);
    let got = policy.evaluate(&gate, LIMIT).unwrap();
    assert_eq!(got.deny.len(), 1, "{got:?}");
    assert!(got.deny[0].contains("08:00-18:00"), "{got:?}");
    gate.agent.kind = "human".to_owned();
    assert!(policy.evaluate(&gate, LIMIT).unwrap().deny.is_empty());
}

#[test]
fn one_evaluation_of_the_default_policy_is_fast() {
    let policy = default_policy();
    let input = change(&[
        ("db/migrate/001_cards.rb", 50, 0),
        ("src/auth/session.rs", 30, 10),
        ("docs/cards.md", 20, 0),
        ("tests/cards_test.rs", 80, 0),
    ])
    .finding(Category::DependencyChange, Severity::Low)
    .owned_by("db/migrate/ @payments\n/src/auth/ @acme/security\n")
    .input();
    policy.evaluate(&input, LIMIT).unwrap();
    let runs = 200;
    let started = Instant::now();
    for _ in 0..runs {
        policy.evaluate(&input, LIMIT).unwrap();
    }
    let each = started.elapsed() / runs;
    println!("one default-policy evaluation (thread, clone, input, eval, answer): {each:?}");
    // Generous: a debug build on a loaded CI machine; typical is well under this.
    assert!(each < Duration::from_millis(50), "{each:?} per evaluation");
}

/// A policy that computes too much is stopped by the interpreter's own timer and the
/// caller hears of it within a small multiple of the limit. Nothing is decided.
#[test]
fn slow_policies_time_out_and_fail_closed() {
    let limit = Duration::from_millis(200);
    let input = change(&[("src/main.rs", 1, 0)]).input();
    let slow = [
        (
            "nested comprehension over ranges",
            r#"package airlock
risk := "low" if {
    n := count([x | some i in numbers.range(1, 1000000); some j in numbers.range(1, 1000000); x := i * j])
    n > 0
}"#,
        ),
        (
            "comprehensions nested three deep over a set",
            r#"package airlock
_big := {i | some i in numbers.range(1, 100000)}
risk := "low" if {
    count({[a, b, c] | some a in _big; some b in _big; some c in _big; a + b == c}) > 0
}"#,
        ),
        (
            "nested loops in a rule body",
            r#"package airlock
risk := "low" if {
    some i in numbers.range(1, 1000000)
    some j in numbers.range(1, 1000000)
    i + j == -1
}"#,
        ),
    ];
    for (what, text) in slow {
        let policy = Policy::from_modules(&[("slow.rego", text)]).unwrap();
        let started = Instant::now();
        let outcome = policy.evaluate(&input, limit);
        let took = started.elapsed();
        println!("{what}: {took:?}");
        match outcome {
            Err(PolicyError::Timeout { limit: l }) => assert_eq!(l, limit),
            other => panic!("{what}: expected a timeout, got {other:?}"),
        }
        assert!(took >= limit, "{what}: stopped early, after {took:?}");
        assert!(
            took < limit * 3,
            "{what}: answered after {took:?}, limit {limit:?}"
        );
        let message = PolicyError::Timeout { limit }.to_string();
        assert!(
            message.contains("200 ms") && message.contains("accepted"),
            "{message}"
        );
    }
}

/// `numbers.range(1, 1e9)` would reserve gigabytes in one uninterruptible builtin call;
/// airlock's replacement refuses it at once, naming the cap.
#[test]
fn huge_ranges_are_refused_at_once() {
    let input = change(&[("src/main.rs", 1, 0)]).input();
    for call in [
        "numbers.range(1, 1e9)",
        "numbers.range(1e12, 0)",
        "numbers.range_step(0, 1e10, 2)",
    ] {
        let text = format!("package airlock\nrisk := \"low\" if count({call}) > 0\n");
        let policy = Policy::from_modules(&[("range.rego", text.as_str())]).unwrap();
        let started = Instant::now();
        let error = policy.evaluate(&input, LIMIT).unwrap_err();
        assert!(started.elapsed() < LIMIT, "{call}");
        assert!(
            matches!(&error, PolicyError::Evaluation { message } if message.contains("at most 1000000")),
            "{call}: {error}"
        );
    }
    // Within the cap, ranges behave as in OPA.
    let policy = Policy::from_modules(&[(
        "range.rego",
        "package airlock\nrisk := \"low\" if numbers.range(3, 1) == [3, 2, 1]\n",
    )])
    .unwrap();
    assert_eq!(policy.evaluate(&input, LIMIT).unwrap().risk, Risk::Low);
}

fn load_error(modules: &[(&str, &str)]) -> PolicyError {
    match Policy::from_modules(modules) {
        Ok(policy) => panic!("{modules:?} loaded: {policy:?}"),
        Err(error) => error,
    }
}

fn evaluation_error(text: &str) -> PolicyError {
    let policy =
        Policy::from_modules(&[("policy.rego", text)]).unwrap_or_else(|e| panic!("{text}: {e}"));
    match policy.evaluate(&change(&[("src/main.rs", 1, 0)]).input(), LIMIT) {
        Ok(obligations) => panic!("{text}: decided {obligations:?}"),
        Err(error) => error,
    }
}

#[test]
fn broken_policies_are_errors_never_obligations() {
    // Refused when loaded.
    let error = load_error(&[("policy.rego", "package airlock\n\nrisk := \"low\nx := 1\n")]);
    assert!(matches!(error, PolicyError::Parse { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("policy.rego:3:"),
        "the line is named: {message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    let error = load_error(&[("policy.rego", "package airlock\nrisk := \"low\" if {\n")]);
    assert!(error.to_string().contains("policy.rego:"), "{error}");
    let error = load_error(&[("policy.rego", "package reviews\nrisk := \"low\"\n")]);
    assert!(
        matches!(&error, PolicyError::Package { found, .. } if found == "reviews"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("accepted: `package airlock`"),
        "{error}"
    );
    let error = load_error(&[
        ("a.rego", "package airlock\nrisk := \"low\"\n"),
        ("b.rego", "package airlock.extra\nx := 1\n"),
    ]);
    assert!(matches!(error, PolicyError::Package { .. }), "{error:?}");
    let error = load_error(&[(
        "policy.rego",
        "package airlock\n_f(x) := 1\n_f(x, y) := 2\nrisk := \"low\"\n",
    )]);
    assert!(matches!(error, PolicyError::Invalid { .. }), "{error:?}");
    assert!(error.to_string().contains("policy.rego:3:"), "{error}");
    // Rego v0 syntax is refused with a hint.
    let error = load_error(&[("policy.rego", "package airlock\nrisk = \"low\" { true }\n")]);
    assert!(error.to_string().contains("Rego v1"), "{error}");
    let none: &[(&str, &str)] = &[];
    assert!(matches!(load_error(none), PolicyError::NoModules));
    let error = load_error(&[
        ("a.rego", "package airlock\n"),
        ("a.rego", "package airlock\n"),
    ]);
    assert!(
        matches!(error, PolicyError::DuplicateModule(_)),
        "{error:?}"
    );

    // Refused when deciding: the answer is checked strictly.
    for (text, says) in [
        (
            "package airlock\napprovals := {\"count\": 1}\n",
            "did not define `risk`",
        ),
        ("package airlock\n", "did not define `risk`"),
        // Nothing but the policy's own package exists: other data is undefined.
        (
            "package airlock\nimport data.elsewhere\nrisk := elsewhere.x\n",
            "did not define `risk`",
        ),
        (
            "package airlock\nrisk := \"extreme\"\n",
            "expected one of `low`, `medium`, `high`, `critical`",
        ),
        ("package airlock\nrisk := 3\n", "accepted rules"),
        (
            "package airlock\nrisk := \"low\"\napprovals := {\"count\": \"two\"}\n",
            "accepted rules",
        ),
        (
            "package airlock\nrisk := \"low\"\napprovals := {\"count\": 99}\n",
            "accepted: 1 to 10",
        ),
        (
            "package airlock\nrisk := \"low\"\napprovals := {\"count\": 1.5}\n",
            "accepted rules",
        ),
        (
            "package airlock\nrisk := \"low\"\napprovals := {\"count\": 1, \"groups\": {\"payments\": 1}}\n",
            "@org/team",
        ),
        (
            "package airlock\nrisk := \"low\"\ndeny := \"no\"\n",
            "accepted rules",
        ),
        (
            "package airlock\nrisk := \"low\"\ndeny contains \"\"\n",
            "empty",
        ),
        (
            "package airlock\nrisk := \"low\"\nstages := {\"canary_steps\": [50, 5]}\n",
            "increasing",
        ),
        (
            "package airlock\nrisk := \"low\"\nauto_approve := \"yes\"\n",
            "accepted rules",
        ),
        (
            "package airlock\nrisk := \"low\"\naprovals := 2\n",
            "aprovals",
        ),
        (
            "package airlock\nrisk := \"low\"\nrisk_level := \"low\"\n",
            "risk_level",
        ),
    ] {
        let error = evaluation_error(text);
        assert!(
            matches!(error, PolicyError::Answer { .. }),
            "{text}: {error:?}"
        );
        assert!(error.to_string().contains(says), "{text}: {error}");
    }
    // Errors while deciding.
    for (text, says) in [
        (
            "package airlock\nrisk := \"low\"\nrisk := \"high\"\n",
            "conflicts",
        ),
        (
            "package airlock\nrisk := \"low\" if regex.match(\"[\", \"a\")\n",
            "regex",
        ),
        (
            "package airlock\nrisk := \"low\" if to_number(\"ten\") > 1\n",
            "policy.rego:2:",
        ),
        (
            "package airlock\nrisk := _a\n_a := _b\n_b := _a\n",
            "recursion",
        ),
        ("package airlock\nrisk := y\n", "unsafe"),
    ] {
        let error = match Policy::from_modules(&[("policy.rego", text)]) {
            Err(error) => error,
            Ok(_) => evaluation_error(text),
        };
        assert!(
            matches!(
                error,
                PolicyError::Evaluation { .. } | PolicyError::Invalid { .. }
            ),
            "{text}: {error:?}"
        );
        assert!(error.to_string().contains(says), "{text}: {error}");
    }
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.rego");
    std::fs::write(&path, "package airlock\n\nrisk := [\n").unwrap();
    let error = Policy::load(&path).unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains("policy.rego:3:") || message.contains("policy.rego:4:"),
        "{message}"
    );

    std::fs::write(&path, DEFAULT_POLICY).unwrap();
    let loaded = Policy::load(&path).unwrap();
    // Named by the file name alone: the hash does not depend on the checkout's location.
    assert_eq!(loaded.module_names().collect::<Vec<_>>(), ["policy.rego"]);
    assert_eq!(loaded.bundle_sha256(), default_policy().bundle_sha256());

    let missing = Policy::load(&dir.path().join("nope.rego")).unwrap_err();
    assert!(matches!(missing, PolicyError::Read { .. }), "{missing:?}");
    assert!(missing.to_string().contains("nope.rego"), "{missing}");
}

/// A policy sees nothing but its input: no environment, network, clock or randomness
/// (Rego has no builtin that reads files; `opa.runtime` is the one that reads the
/// environment). Each attempt is an error, so the change is held.
#[test]
fn policies_cannot_reach_outside() {
    for (what, text) in [
        ("environment", "risk := opa.runtime().env.HOME"),
        (
            "network",
            "risk := http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:9/\"}).body",
        ),
        ("clock", "risk := \"low\" if time.now_ns() > 0"),
        (
            "randomness",
            "risk := [\"low\", \"high\"][rand.intn(\"x\", 2)]",
        ),
        ("uuid", "risk := \"low\" if uuid.rfc4122(\"x\") != \"\""),
        (
            "dns",
            "risk := \"low\" if net.lookup_ip_addr(\"localhost\")",
        ),
    ] {
        let text = format!("package airlock\n{text}\n");
        let error = match Policy::from_modules(&[("outside.rego", text.as_str())]) {
            Err(error) => error,
            Ok(_) => evaluation_error(&text),
        };
        assert!(
            matches!(
                error,
                PolicyError::Evaluation { .. } | PolicyError::Invalid { .. }
            ),
            "{what}: {error:?}"
        );
        println!("{what}: {error}");
    }
    // `print` neither fails nor writes anywhere a policy could read back.
    let policy = Policy::from_modules(&[(
        "print.rego",
        "package airlock\nrisk := \"low\" if print(\"hello\")\n",
    )])
    .unwrap();
    assert_eq!(
        policy
            .evaluate(&change(&[("a.md", 1, 0)]).input(), LIMIT)
            .unwrap()
            .risk,
        Risk::Low
    );
}

/// The builtins a path rule needs are there: glob and regex matching, string functions.
#[test]
fn path_builtins_are_available() {
    let policy = Policy::from_modules(&[(
        "paths.rego",
        r#"package airlock
risk := "high" if {
    some path in input.paths
    glob.match("services/*/migrations/**", ["/"], path)
    regex.match(`^services/[a-z]+/`, path)
    strings.any_suffix_match(path, {".sql"})
}
default risk := "low"
"#,
    )])
    .unwrap();
    let risk = |path: &'static str| {
        policy
            .evaluate(&change(&[(path, 1, 0)]).input(), LIMIT)
            .unwrap()
            .risk
    };
    assert_eq!(risk("services/billing/migrations/2024/001.sql"), Risk::High);
    assert_eq!(risk("services/billing/src/main.rs"), Risk::Low);
}

#[test]
fn modules_combine_and_the_bundle_hash_identifies_them() {
    let rules = "package airlock\nrisk := \"high\" if _touches_payments\ndefault risk := \"low\"\n";
    let helpers = "package airlock\n_touches_payments if { some p in input.paths; startswith(p, \"payments/\") }\n";
    let policy = Policy::from_modules(&[("rules.rego", rules), ("helpers.rego", helpers)]).unwrap();
    let got = policy
        .evaluate(&change(&[("payments/api.rs", 1, 0)]).input(), LIMIT)
        .unwrap();
    assert_eq!(got.risk, Risk::High);
    assert_eq!(
        policy.module_names().collect::<Vec<_>>(),
        ["helpers.rego", "rules.rego"]
    );

    // Stable: the order the modules are given in does not matter, and it is a known
    // function of the bytes.
    let reordered =
        Policy::from_modules(&[("helpers.rego", helpers), ("rules.rego", rules)]).unwrap();
    assert_eq!(policy.bundle_sha256(), reordered.bundle_sha256());
    assert_eq!(policy.bundle_sha256().len(), 64);
    let again = Policy::from_modules(&[("rules.rego", rules), ("helpers.rego", helpers)]).unwrap();
    assert_eq!(policy.bundle_sha256(), again.bundle_sha256());

    // Any change to any module, its name, or the set of modules changes it.
    let variants = [
        Policy::from_modules(&[
            ("rules.rego", format!("{rules} ").as_str()),
            ("helpers.rego", helpers),
        ]),
        Policy::from_modules(&[
            ("rules.rego", rules),
            ("helpers.rego", format!("{helpers}\n").as_str()),
        ]),
        Policy::from_modules(&[("rules2.rego", rules), ("helpers.rego", helpers)]),
        Policy::from_modules(&[
            ("rules.rego", rules),
            ("helpers.rego", helpers),
            ("more.rego", "package airlock\n"),
        ]),
    ];
    let mut seen = std::collections::BTreeSet::from([policy.bundle_sha256().to_owned()]);
    for variant in variants {
        assert!(
            seen.insert(variant.unwrap().bundle_sha256().to_owned()),
            "a variant hashed the same"
        );
    }
    println!(
        "default policy bundle: {}",
        default_policy().bundle_sha256()
    );
}

/// GitHub's documented example CODEOWNERS file, and the owners it gives.
const GITHUB_EXAMPLE: &str = "\
# This is a comment.
# Each line is a file pattern followed by one or more owners.

# These owners will be the default owners for everything in
# the repo. Unless a later match takes precedence,
# @global-owner1 and @global-owner2 will be requested for
# review when someone opens a pull request.
*       @global-owner1 @global-owner2

# Order is important; the last matching pattern takes the most
# precedence. When someone opens a pull request that only
# modifies JS files, only @js-owner and not the global
# owner(s) will be requested for a review.
*.js    @js-owner #This is an inline comment.

# You can also use email addresses if you prefer. They'll be
# used to look up users just like we do for commit author
# emails.
*.go docs@example.com

# Teams can be specified as code owners as well. Teams should
# be identified in the format @org/team-name. Teams must have
# explicit write access to the repository. In this example,
# the octocats team in the octo-org organization owns all .txt files.
*.txt @octo-org/octocats

# In this example, @doctocat owns any files in the build/logs
# directory at the root of the repository and any of its
# subdirectories.
/build/logs/ @doctocat

# The `docs/*` pattern will match files like
# `docs/getting-started.md` but not further nested files like
# `docs/build-app/troubleshooting.md`.
docs/*  docs@example.com

# In this example, @octocat owns any file in an apps directory
# anywhere in your repository.
apps/ @octocat

# In this example, @doctocat owns any file in the `/docs`
# directory in the root of your repository and any of its
# subdirectories.
/docs/ @doctocat

# In this example, any change inside the `/scripts` directory
# will require approval from @doctocat or @octocat.
/scripts/ @doctocat @octocat

# In this example, @octocat owns any file in a `/logs` directory such as
# `/build/logs`, `/scripts/logs`, and `/deeply/nested/logs`. Any changes
# in a `/logs` directory will require approval from @octocat.
**/logs @octocat

# In this example, @octocat owns any file in the `/apps`
# directory in the root of your repository except for the `/apps/github`
# subdirectory, as its owners are left empty. Without an owner, changes
# to `apps/github` can be made with the approval of any user who has
# write access to the repository.
/apps/ @octocat
/apps/github

# In this example, @octocat owns any file in the `/apps`
# directory in the root of your repository except for the `/apps/github`
# subdirectory, as this subdirectory has its own owner @doctocat
/apps/ @octocat
/apps/github @doctocat
";

#[test]
fn codeowners_as_github_documents_them() {
    let owners = CodeOwners::parse(GITHUB_EXAMPLE).unwrap();
    let global: &[&str] = &["@global-owner1", "@global-owner2"];
    let cases: &[(&str, &[&str])] = &[
        ("README", global),
        ("src/main.rs", global),
        ("index.js", &["@js-owner"]),
        ("web/lib/index.js", &["@js-owner"]),
        ("cmd/main.go", &["docs@example.com"]),
        ("notes/a.txt", &["@octo-org/octocats"]),
        ("build/logs/today.log", &["@octocat"]), // `**/logs` comes later than `/build/logs/`
        ("build/out/app", global),
        // `/docs/` comes after `docs/*`, so it wins for files directly in docs/ too.
        ("docs/getting-started.md", &["@doctocat"]),
        ("docs/build-app/troubleshooting.md", &["@doctocat"]),
        ("web/apps/index.html", &["@octocat"]),
        ("scripts/deploy.sh", &["@doctocat", "@octocat"]),
        ("deeply/nested/logs/x.txt", &["@octocat"]),
        ("apps/web/index.html", &["@octocat"]),
        ("apps/github/index.html", &["@doctocat"]),
        ("apps/githubber/x", &["@octocat"]),
        ("/apps/github/x", &["@doctocat"]),
        ("", &[]),
    ];
    for (path, want) in cases {
        assert_eq!(owners.owners_of(path), *want, "{path}");
    }
    assert_eq!(
        owners.owners_of_all(["index.js", "scripts/x", "lib/a.js"]),
        ["@doctocat", "@js-owner", "@octocat"]
    );
    // `docs/*` alone: files directly in docs/, not nested ones.
    let docs = CodeOwners::parse("docs/*  docs@example.com\n").unwrap();
    assert_eq!(
        docs.owners_of("docs/getting-started.md"),
        ["docs@example.com"]
    );
    assert!(
        docs.owners_of("docs/build-app/troubleshooting.md")
            .is_empty()
    );
    assert!(docs.owners_of("src/docs/a.md").is_empty());
}

#[test]
fn codeowners_last_match_wins_and_an_empty_line_clears() {
    let owners =
        CodeOwners::parse("* @everyone\r\n/apps/ @octocat\r\n/apps/github\r\n*.md @writers\r\n")
            .unwrap();
    assert_eq!(owners.len(), 4);
    assert_eq!(owners.owners_of("apps/x.rs"), ["@octocat"]);
    assert!(owners.owners_of("apps/github/x.rs").is_empty(), "cleared");
    assert_eq!(
        owners.owners_of("apps/github/README.md"),
        ["@writers"],
        "a later line wins"
    );
    assert_eq!(owners.owners_of("lib.rs"), ["@everyone"]);
    // The clearing line is not an owner of anything, so it adds no group.
    assert_eq!(
        owners.owners_of_all(["apps/github/a", "apps/github/b"]),
        Vec::<String>::new()
    );
    assert!(CodeOwners::parse("# nothing\n\n").unwrap().is_empty());
}

#[test]
fn codeowners_errors_name_the_line() {
    for (text, line, says) in [
        ("* @a\n!secret.txt @b\n", 2, "negation"),
        ("* @a\n\n[a-z].rs @b\n", 3, "character ranges"),
        ("src/[ab]/x @b\n", 1, "character ranges"),
        ("\\#notes @b\n", 1, "backslash"),
        ("path\\ with\\ spaces @b\n", 1, "backslash"),
        ("a/***/b @b\n", 1, "***"),
        ("a//b @b\n", 1, "empty path segments"),
        ("a**b @b\n", 1, "whole path segment"),
        ("/ @b\n", 1, "matches nothing"),
        ("* @a\n*.rs payments\n", 2, "not an owner"),
        ("*.rs @org/team/sub\n", 1, "@org/team"),
        ("*.rs @\n", 1, "@org/team"),
        ("*.rs user@localhost\n", 1, "not an owner"),
        ("*.rs a@b@c.com\n", 1, "not an owner"),
    ] {
        let error = CodeOwners::parse(text).unwrap_err();
        assert_eq!(error.line, line, "{text:?}: {error}");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("CODEOWNERS line {line}: ")),
            "{message}"
        );
        assert!(message.contains(says), "{text:?}: {message}");
    }
    let big = "# x\n".repeat(800_000);
    assert_eq!(CodeOwners::parse(&big).unwrap_err().line, 0);
}

#[test]
fn codeowners_locations_are_githubs_in_order() {
    assert_eq!(
        CodeOwners::locate(),
        [".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"]
    );
    // Each of them is a gate file: changing ownership needs an admin.
    assert!(CodeOwners::locate().iter().all(|path| is_gate_file(path)));
}

#[test]
fn obligations_groups_come_from_owners_sorted() {
    // `input.owners` is sorted and deduplicated, so groups are too.
    let change = change(&[("a/x.rs", 1, 0), ("b/y.rs", 1, 0), ("a/z.rs", 1, 0)])
        .owned_by("/a/ @zeta @alpha\n/b/ @alpha\n");
    let input = change.input();
    assert_eq!(input.owners, ["@alpha", "@zeta"]);
    let got = default_policy().evaluate(&input, LIMIT).unwrap();
    assert_eq!(
        got.groups,
        BTreeMap::from([("@alpha".to_owned(), 1), ("@zeta".to_owned(), 1)])
    );
    assert_eq!(got.humans_needed(), 2);
}
